//! Bi-encoders shared by every collection that uses them: one loaded model (and one thread
//! pool) per distinct embedder directory, loaded on first use.

use crate::once_map::OnceMap;
use crate::{Result, RetrieveError};
use crossrank_engine::BiEncoder;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A cache of loaded bi-encoders keyed by canonical directory.
#[derive(Default)]
pub struct Embedders {
    loaded: OnceMap<PathBuf, Arc<BiEncoder>>,
}

impl Embedders {
    /// The bi-encoder in `dir`, loading it the first time. Concurrent first calls for one
    /// directory load it once; loading one embedder does not block calls for another.
    pub fn get(&self, dir: &Path) -> Result<Arc<BiEncoder>> {
        let key = dir.canonicalize().map_err(|e| RetrieveError::Io {
            path: dir.display().to_string(),
            message: e.to_string(),
        })?;
        self.loaded
            .get_or_try_init(&key, || Ok(Arc::new(BiEncoder::load(&key, None)?)))
    }

    /// How many distinct bi-encoders are loaded.
    pub fn loaded(&self) -> usize {
        self.loaded.made().len()
    }
}

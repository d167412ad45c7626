//! Bi-encoders shared by every collection that uses them: one loaded model (and one thread
//! pool) per distinct embedder directory, loaded on first use.

use crate::{Result, RetrieveError};
use crossrank_engine::BiEncoder;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

type Slot = Arc<Mutex<Option<Arc<BiEncoder>>>>;

/// A cache of loaded bi-encoders keyed by canonical directory.
#[derive(Default)]
pub struct Embedders {
    slots: Mutex<HashMap<PathBuf, Slot>>,
}

impl Embedders {
    /// The bi-encoder in `dir`, loading it the first time. Concurrent first calls for one
    /// directory load it once; loading one embedder does not block calls for another.
    pub fn get(&self, dir: &Path) -> Result<Arc<BiEncoder>> {
        let key = dir.canonicalize().map_err(|e| RetrieveError::Io {
            path: dir.display().to_string(),
            message: e.to_string(),
        })?;
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.clone())
            .or_default()
            .clone();
        let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = slot.as_ref() {
            return Ok(b.clone());
        }
        let b = Arc::new(BiEncoder::load(&key, None)?);
        *slot = Some(b.clone());
        Ok(b)
    }

    /// How many distinct bi-encoders are loaded.
    pub fn loaded(&self) -> usize {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|s| s.lock().map(|s| s.is_some()).unwrap_or(false))
            .count()
    }
}

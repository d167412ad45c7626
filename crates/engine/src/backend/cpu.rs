//! The CPU backend: the engine's own models and kernels on a rayon pool.

use super::Backend;
use crate::error::Result;
use crate::models::encoder::{PackedBatch, Workspace};
use crate::models::SequenceClassifier;
use std::sync::{Arc, Mutex};

/// A sequence classifier run on this machine's cores (AVX-512 / AVX2 / portable kernels).
pub struct CpuBackend {
    model: SequenceClassifier,
    pool: Arc<rayon::ThreadPool>,
    workspace: Mutex<Workspace>,
}

impl CpuBackend {
    /// Runs `model` on `pool`.
    pub fn new(model: SequenceClassifier, pool: Arc<rayon::ThreadPool>) -> CpuBackend {
        CpuBackend {
            model,
            pool,
            workspace: Mutex::new(Workspace::default()),
        }
    }
}

impl Backend for CpuBackend {
    fn device(&self) -> String {
        "cpu".into()
    }

    fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    fn classify(&self, batch: &PackedBatch) -> Result<Vec<Vec<f32>>> {
        let mut guard = self.workspace.lock().unwrap_or_else(|p| p.into_inner());
        let ws: &mut Workspace = &mut guard;
        Ok(self.pool.install(|| self.model.forward(batch, ws)))
    }

    fn flops(&self, len: usize) -> (f64, f64) {
        (self.model.model_flops(len), self.model.executed_flops(len))
    }
}

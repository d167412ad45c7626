//! The CPU backend: the engine's own models and kernels on a rayon pool.

use super::{Backend, EmbedBackend};
use crate::bi_encoder::Pooling;
use crate::error::Result;
use crate::models::encoder::{Encoder, PackedBatch, Workspace};
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

    fn batch_flops(&self, batch: &PackedBatch) -> f64 {
        self.model.batch_flops(batch)
    }
}

/// An encoder run on this machine's cores, pooled into sentence embeddings.
pub struct CpuEncoder {
    encoder: Encoder,
    hidden: usize,
    pool: Arc<rayon::ThreadPool>,
    workspace: Mutex<Workspace>,
}

impl CpuEncoder {
    /// Runs `encoder` (hidden width `hidden`) on `pool`.
    pub fn new(encoder: Encoder, hidden: usize, pool: Arc<rayon::ThreadPool>) -> CpuEncoder {
        CpuEncoder {
            encoder,
            hidden,
            pool,
            workspace: Mutex::new(Workspace::default()),
        }
    }
}

impl EmbedBackend for CpuEncoder {
    fn device(&self) -> String {
        "cpu".into()
    }

    fn embed(
        &self,
        batch: &PackedBatch,
        pooling: Pooling,
        normalize: bool,
    ) -> Result<Vec<Vec<f32>>> {
        let mut guard = self.workspace.lock().unwrap_or_else(|p| p.into_inner());
        let ws: &mut Workspace = &mut guard;
        self.pool.install(|| self.encoder.forward(batch, ws));
        let h = self.hidden;
        Ok((0..batch.sequences())
            .map(|s| {
                let rows = &ws.x[batch.offsets[s] * h..batch.offsets[s + 1] * h];
                let mut v = pool_rows(rows, h, pooling);
                if normalize {
                    let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-12);
                    v.iter_mut().for_each(|a| *a /= norm);
                }
                v
            })
            .collect())
    }
}

/// One vector from a sequence's token states (`rows`: tokens x `h`).
fn pool_rows(rows: &[f32], h: usize, pooling: Pooling) -> Vec<f32> {
    let n = (rows.len() / h.max(1)).max(1);
    let mut v = vec![0.0f32; h];
    match pooling {
        Pooling::Cls => v.copy_from_slice(&rows[..h]),
        Pooling::Max => {
            v.fill(f32::NEG_INFINITY);
            for r in rows.chunks_exact(h) {
                for (a, b) in v.iter_mut().zip(r) {
                    *a = a.max(*b);
                }
            }
        }
        Pooling::Mean | Pooling::MeanSqrtLen => {
            for r in rows.chunks_exact(h) {
                for (a, b) in v.iter_mut().zip(r) {
                    *a += b;
                }
            }
            let d = if pooling == Pooling::Mean {
                n as f32
            } else {
                (n as f32).sqrt()
            };
            v.iter_mut().for_each(|a| *a /= d);
        }
    }
    v
}

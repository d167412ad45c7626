//! The execution seam, in the style of TEI's `backends/core`: model configuration, weights,
//! tokenisation and packing into a [`PackedBatch`] are shared; a [`Backend`] runs the network
//! on a packed batch. The CPU implementation is [`CpuBackend`]; another device is an added
//! [`cuda::CudaBackend`] runs the same trait on an NVIDIA GPU; [`place`] decides which one a
//! model gets from `--device`, `--dtype` and what the model is.
//!
//! [`EmbedBackend`] is the same seam for bi-encoders (encoder + pooling). [`batches`] is the one
//! batching rule both the cross-encoder and the bi-encoder use.

mod cpu;
pub mod cuda;

pub use cpu::{CpuBackend, CpuEncoder};

use crate::bi_encoder::Pooling;
use crate::config::Architecture;
use crate::device::{Device, Dtype};
use crate::error::{EngineError, Result};
use crate::models::encoder::{PackedBatch, Quantize};
use std::ops::Range;

/// Runs a sequence classifier's forward pass on some device.
pub trait Backend: Send + Sync {
    /// The device, as `--device` names it ("cpu").
    fn device(&self) -> String;
    /// The device's own name ("cpu", or the GPU's model name).
    fn device_name(&self) -> String {
        self.device()
    }
    /// The GEMM operand type.
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    /// Device memory held (weights and activation buffers), where the device has its own.
    fn memory_bytes(&self) -> Option<usize> {
        None
    }
    /// Worker threads the backend computes with.
    fn threads(&self) -> usize;
    /// One row of classifier outputs (logits) per sequence of `batch`, in order.
    fn classify(&self, batch: &PackedBatch) -> Result<Vec<Vec<f32>>>;
    /// (nominal, executed) FLOPs of one sequence of `len` tokens.
    fn flops(&self, len: usize) -> (f64, f64);
    /// FLOPs [`Backend::classify`] executes on `batch` (less than the sum over its sequences
    /// where work is shared, as decoders share prompt prefixes).
    fn batch_flops(&self, batch: &PackedBatch) -> f64 {
        batch
            .offsets
            .windows(2)
            .map(|w| self.flops(w[1] - w[0]).1)
            .sum()
    }
}

/// Runs an encoder to pooled sentence embeddings on some device (the bi-encoders' seam).
pub trait EmbedBackend: Send + Sync {
    /// The device, as `--device` names it ("cpu").
    fn device(&self) -> String;
    /// One pooled vector per sequence of `batch`, L2-normalised when `normalize`.
    fn embed(
        &self,
        batch: &PackedBatch,
        pooling: Pooling,
        normalize: bool,
    ) -> Result<Vec<Vec<f32>>>;
}

/// Where [`place`] puts a model.
#[derive(Debug, Clone)]
pub enum Placement {
    /// The CPU backend; `note` says why when `--device auto` did not take a GPU.
    Cpu {
        /// Why not a GPU (only for `auto`).
        note: Option<String>,
    },
    /// The CUDA backend on this GPU, in this dtype.
    Cuda {
        /// The GPU [`cuda::probe`] found.
        info: cuda::GpuInfo,
        /// GEMM operand type (default bf16).
        dtype: Dtype,
    },
}

/// Resolves `--device` and `--dtype` for a model: an explicit `cuda` that cannot be had is an
/// error that says why; `auto` takes the GPU when the driver, a device and the model's
/// architecture allow it, and otherwise the CPU with a note saying why.
pub fn place(
    device: Device,
    dtype: Option<Dtype>,
    architecture: Architecture,
    quantize: Quantize,
) -> Result<Placement> {
    let half_on_cpu = |why: &str| {
        EngineError::InvalidOption(format!(
            "--dtype {} runs on a GPU only{why}; the CPU computes in f32 (or --quantize int8)",
            dtype.map_or("", |d| d.name())
        ))
    };
    let wants_half = matches!(dtype, Some(Dtype::F16 | Dtype::Bf16));
    match device {
        Device::Cpu if wants_half => Err(half_on_cpu("")),
        Device::Cpu => Ok(Placement::Cpu { note: None }),
        Device::Cuda(n) => {
            if quantize == Quantize::Int8 {
                return Err(EngineError::InvalidOption(
                    "--quantize int8 is a CPU option; on a GPU use --dtype f16 or bf16".into(),
                ));
            }
            if !cuda::supports(architecture) {
                return Err(EngineError::Device(format!(
                    "the CUDA backend runs BERT and XLM-RoBERTa cross-encoders; {architecture:?} runs on --device cpu"
                )));
            }
            let info = cuda::probe(n)
                .map_err(|e| EngineError::Device(format!("--device cuda:{n}: {e}")))?;
            Ok(Placement::Cuda {
                info,
                dtype: dtype.unwrap_or(Dtype::Bf16),
            })
        }
        Device::Auto => {
            let why = if quantize == Quantize::Int8 {
                "--quantize int8 runs on the CPU".to_string()
            } else if !cuda::supports(architecture) {
                format!("the CUDA backend does not run {architecture:?} yet")
            } else {
                match cuda::probe(0) {
                    Ok(info) => {
                        return Ok(Placement::Cuda {
                            info,
                            dtype: dtype.unwrap_or(Dtype::Bf16),
                        })
                    }
                    Err(e) => e,
                }
            };
            if wants_half {
                return Err(half_on_cpu(&format!(
                    " and --device auto chose the CPU ({why})"
                )));
            }
            Ok(Placement::Cpu {
                note: Some(format!("device auto: cpu ({why})")),
            })
        }
    }
}

/// Consecutive ranges of items, each at most `max_tokens` tokens and `max_items` items long;
/// an item longer than `max_tokens` gets a range of its own. `lengths[i]` is item i's tokens.
pub fn batches(lengths: &[usize], max_tokens: usize, max_items: usize) -> Vec<Range<usize>> {
    let max_items = max_items.max(1);
    let mut out = Vec::new();
    let mut start = 0;
    while start < lengths.len() {
        let mut end = start;
        let mut tokens = 0;
        while end < lengths.len()
            && (end == start || (tokens + lengths[end] <= max_tokens && end - start < max_items))
        {
            tokens += lengths[end];
            end += 1;
        }
        out.push(start..end);
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::batches;

    #[test]
    fn batches_respect_both_budgets_and_cover_every_item_once() {
        assert_eq!(
            batches(&[3, 3, 3, 10, 1], 6, 9),
            vec![0..2, 2..3, 3..4, 4..5]
        );
        assert_eq!(batches(&[1, 1, 1, 1, 1], 100, 2), vec![0..2, 2..4, 4..5]);
        assert!(batches(&[], 10, 10).is_empty());
        let lens: Vec<usize> = (0..100).map(|i| i * 7 % 13 + 1).collect();
        let b = batches(&lens, 20, 5);
        assert_eq!(b.first().map(|r| r.start), Some(0));
        assert_eq!(b.last().map(|r| r.end), Some(100));
        for w in b.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
        for r in &b {
            let t: usize = lens[r.clone()].iter().sum();
            assert!(
                r.len() <= 5 && (t <= 20 || r.len() == 1),
                "{r:?}: {t} tokens"
            );
        }
    }
}

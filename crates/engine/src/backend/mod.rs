//! The execution seam, in the style of TEI's `backends/core`: model configuration, weights,
//! tokenisation and packing into a [`PackedBatch`] are shared; a [`Backend`] runs the network
//! on a packed batch. The CPU implementation is [`CpuBackend`]; another device is an added
//! file here that implements the same trait (the CUDA issue's backend).
//!
//! [`EmbedBackend`] is the same seam for bi-encoders (encoder + pooling). [`batches`] is the one
//! batching rule both the cross-encoder and the bi-encoder use.

mod cpu;

pub use cpu::{CpuBackend, CpuEncoder};

use crate::bi_encoder::Pooling;
use crate::error::Result;
use crate::models::encoder::PackedBatch;
use std::ops::Range;

/// Runs a sequence classifier's forward pass on some device.
pub trait Backend: Send + Sync {
    /// The device, as `--device` names it ("cpu").
    fn device(&self) -> String;
    /// Worker threads the backend computes with.
    fn threads(&self) -> usize;
    /// One row of classifier outputs (logits) per sequence of `batch`, in order.
    fn classify(&self, batch: &PackedBatch) -> Result<Vec<Vec<f32>>>;
    /// (nominal, executed) FLOPs of one sequence of `len` tokens.
    fn flops(&self, len: usize) -> (f64, f64);
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

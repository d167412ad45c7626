//! BERT (`BertForSequenceClassification`): absolute positions from 0, two token types,
//! pooler (dense + tanh on [CLS]) then a linear classifier.

use super::encoder::{ClassifierHead, Encoder, PackedBatch, Quantize};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::weights::Weights;

/// Loads encoder and head; base-model tensors may or may not carry the `bert.` prefix.
pub fn load(
    cfg: &ModelConfig,
    w: &Weights,
    quantize: Quantize,
) -> Result<(Encoder, ClassifierHead)> {
    let prefixes = ["bert.", ""];
    let encoder = Encoder::load(cfg, w, &prefixes, quantize)?;
    let pooler = if w.contains("bert.pooler.dense.weight") {
        "bert.pooler.dense"
    } else {
        "pooler.dense"
    };
    let head = ClassifierHead::load(cfg, w, pooler, "classifier")?;
    Ok((encoder, head))
}

/// Positions 0..len; token types as the tokenizer gave them (0 for A, 1 for B).
pub fn push_sequence(batch: &mut PackedBatch, ids: &[u32], type_ids: &[u32]) {
    batch.ids.extend_from_slice(ids);
    batch.type_ids.extend_from_slice(type_ids);
    batch.positions.extend(0..ids.len() as u32);
}

//! BERT (`BertForSequenceClassification`): absolute positions from 0, two token types,
//! pooler (dense + tanh on [CLS]) then a linear classifier.

use super::encoder::{ClassifierHead, Encoder, EncoderTensors, PackedBatch, Quantize};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::weights::Weights;

/// Loads encoder and head; base-model tensors may or may not carry the `bert.` prefix.
pub fn load(
    cfg: &ModelConfig,
    w: &Weights,
    quantize: Quantize,
) -> Result<(Encoder, ClassifierHead)> {
    let (tensors, head) = tensors(cfg, w)?;
    Ok((Encoder::new(tensors, quantize), head))
}

/// The encoder's tensors and the head, for any backend.
pub fn tensors(cfg: &ModelConfig, w: &Weights) -> Result<(EncoderTensors, ClassifierHead)> {
    let encoder = EncoderTensors::load(cfg, w, &["bert.", ""])?;
    let pooler = if w.contains("bert.pooler.dense.weight") {
        "bert.pooler.dense"
    } else {
        "pooler.dense"
    };
    let head = ClassifierHead::load(cfg, w, pooler, "classifier")?;
    Ok((encoder, head))
}

/// Positions 0..len; token types as the tokenizer gave them (0 for A, 1 for B). A checkpoint
/// with a single token type (`type_vocab_size: 1`) has no row for type 1, so every token is
/// given type 0 there; a type id missing from the tokenizer's output counts as 0. Types past a
/// larger table are refused before this by `CrossEncoder::predict_encoded`; this function
/// never produces an id outside `0..type_vocab_size`.
pub fn push_sequence(batch: &mut PackedBatch, ids: &[u32], type_ids: &[u32], type_vocab: usize) {
    batch.ids.extend_from_slice(ids);
    batch
        .type_ids
        .extend((0..ids.len()).map(|i| match type_ids.get(i) {
            Some(&t) if (t as usize) < type_vocab => t,
            _ => 0,
        }));
    batch.positions.extend(0..ids.len() as u32);
}

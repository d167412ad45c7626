//! XLM-RoBERTa / RoBERTa (`XLMRobertaForSequenceClassification`, the bge-reranker family):
//! positions start at `pad_token_id + 1`, a single token type, and a head of dense + tanh +
//! `out_proj` on `<s>`.

use super::encoder::{ClassifierHead, Encoder, EncoderTensors, PackedBatch, Quantize};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::weights::Weights;

/// Loads encoder and head; base-model tensors may or may not carry the `roberta.` prefix.
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
    let encoder = EncoderTensors::load(cfg, w, &["roberta.", ""])?;
    let head = ClassifierHead::load(cfg, w, "classifier.dense", "classifier.out_proj")?;
    Ok((encoder, head))
}

/// Positions `pad+1 ..` (no token is padding) and token type 0 throughout, as the reference
/// tokenizer returns no token_type_ids for this family.
pub fn push_sequence(cfg: &ModelConfig, batch: &mut PackedBatch, ids: &[u32]) {
    let first = cfg.pad_token_id as u32 + 1;
    batch.ids.extend_from_slice(ids);
    batch.type_ids.extend(std::iter::repeat_n(0, ids.len()));
    batch.positions.extend(first..first + ids.len() as u32);
}

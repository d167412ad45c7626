//! Model architectures: one file each, sharing the packed-token [`encoder`].

pub mod bert;
pub mod encoder;
pub mod xlm_roberta;

use crate::config::{Architecture, ModelConfig};
use crate::error::Result;
use crate::weights::Weights;
use encoder::{ClassifierHead, Encoder, PackedBatch, Quantize, Workspace};

/// Appends one tokenised sequence to `batch` with `config`'s positions and token types.
pub fn push_sequence(config: &ModelConfig, batch: &mut PackedBatch, ids: &[u32], type_ids: &[u32]) {
    if batch.offsets.is_empty() {
        batch.offsets.push(0);
    }
    match config.architecture {
        Architecture::Bert => bert::push_sequence(batch, ids, type_ids),
        Architecture::XlmRoberta => xlm_roberta::push_sequence(config, batch, ids),
    }
    batch.offsets.push(batch.ids.len());
}

/// The name prefixes a base model's tensors may carry in a checkpoint.
pub fn encoder_prefixes(architecture: Architecture) -> &'static [&'static str] {
    match architecture {
        Architecture::Bert => &["bert.", ""],
        Architecture::XlmRoberta => &["roberta.", ""],
    }
}

/// A sequence-classification model (a cross-encoder) of any supported architecture.
pub struct SequenceClassifier {
    config: ModelConfig,
    encoder: Encoder,
    head: ClassifierHead,
}

impl SequenceClassifier {
    /// Loads the weights for `config`'s architecture.
    pub fn load(config: &ModelConfig, weights: &Weights, quantize: Quantize) -> Result<Self> {
        let (encoder, head) = match config.architecture {
            Architecture::Bert => bert::load(config, weights, quantize)?,
            Architecture::XlmRoberta => xlm_roberta::load(config, weights, quantize)?,
        };
        Ok(SequenceClassifier {
            config: config.clone(),
            encoder,
            head,
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The encoder (for FLOP accounting).
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// Appends one tokenised sequence to `batch` with this architecture's positions and types.
    pub fn push_sequence(&self, batch: &mut PackedBatch, ids: &[u32], type_ids: &[u32]) {
        push_sequence(&self.config, batch, ids, type_ids)
    }

    /// Logits of every sequence in `batch`.
    pub fn forward(&self, batch: &PackedBatch, ws: &mut Workspace) -> Vec<Vec<f32>> {
        self.encoder.forward_first_tokens(batch, ws);
        self.head.logits(&ws.first)
    }
}

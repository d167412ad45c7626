//! Model architectures: one file each, sharing the packed-token [`encoder`].

pub mod bert;
pub mod blocks;
pub mod encoder;
pub(crate) mod linear;
pub mod modernbert;
pub mod prefix;
pub mod qwen;
pub mod tensors;
pub mod xlm_roberta;

use crate::config::{Architecture, ModelConfig};
use crate::error::{EngineError, Result};
use crate::weights::Weights;
use encoder::{ClassifierHead, Encoder, PackedBatch, Quantize, Workspace};

/// Appends one tokenised sequence to `batch` with `config`'s positions and token types.
pub fn push_sequence(config: &ModelConfig, batch: &mut PackedBatch, ids: &[u32], type_ids: &[u32]) {
    if batch.offsets.is_empty() {
        batch.offsets.push(0);
    }
    match config.architecture {
        Architecture::Bert => bert::push_sequence(batch, ids, type_ids, config.type_vocab_size),
        Architecture::XlmRoberta => xlm_roberta::push_sequence(config, batch, ids),
        // Rotary models: positions from 0, no token types.
        Architecture::ModernBert | Architecture::Qwen3 | Architecture::Qwen2 => {
            batch.ids.extend_from_slice(ids);
            batch.type_ids.extend(std::iter::repeat_n(0, ids.len()));
            batch.positions.extend(0..ids.len() as u32);
        }
    }
    batch.offsets.push(batch.ids.len());
}

/// The name prefixes a base model's tensors may carry in a checkpoint.
pub fn encoder_prefixes(architecture: Architecture) -> &'static [&'static str] {
    match architecture {
        Architecture::Bert => &["bert.", ""],
        Architecture::XlmRoberta => &["roberta.", ""],
        Architecture::ModernBert => &["model.", ""],
        Architecture::Qwen3 | Architecture::Qwen2 => &["model."],
    }
}

/// What reads the score off the model's final states.
pub enum HeadSpec {
    /// The checkpoint's own classification head.
    Native,
    /// A causal LM scored by `logit[true] - logit[false]` at the last token.
    AnswerTokens {
        /// Token meaning "relevant".
        true_id: u32,
        /// Token meaning "not relevant".
        false_id: u32,
    },
    /// A sentence-transformers module chain after the backbone.
    Chain {
        /// Pooling module.
        pool: modernbert::Pool,
        /// Dense / LayerNorm modules.
        steps: Vec<blocks::HeadStep>,
    },
}

enum Kind {
    Encoder {
        encoder: Encoder,
        head: ClassifierHead,
    },
    ModernBert(modernbert::ModernBert),
    Decoder(qwen::Qwen),
}

/// A cross-encoder of any supported architecture: a backbone and what scores its output.
pub struct SequenceClassifier {
    config: ModelConfig,
    kind: Kind,
}

fn config_error(config: &ModelConfig, message: String) -> EngineError {
    EngineError::Config {
        path: "config.json".into(),
        message: format!("{:?}: {message}", config.architecture),
    }
}

impl SequenceClassifier {
    /// Loads the weights for `config`'s architecture with the given head.
    pub fn load(
        config: &ModelConfig,
        weights: &Weights,
        quantize: Quantize,
        head: HeadSpec,
    ) -> Result<Self> {
        let kind = match config.architecture {
            Architecture::Bert | Architecture::XlmRoberta => {
                let (encoder, head) = match config.architecture {
                    Architecture::Bert => bert::load(config, weights, quantize)?,
                    _ => xlm_roberta::load(config, weights, quantize)?,
                };
                Kind::Encoder { encoder, head }
            }
            Architecture::ModernBert => {
                let mc = modernbert::ModernBertConfig::from_json(&config.json)
                    .map_err(|m| config_error(config, m))?;
                match head {
                    HeadSpec::Chain { pool, steps } => {
                        let prefix = if weights.contains("model.embeddings.tok_embeddings.weight") {
                            "model."
                        } else {
                            ""
                        };
                        let m = modernbert::ModernBert::load(&mc, weights, prefix, None, quantize)?;
                        modernbert::check_head_outputs(&steps, m.hidden())?;
                        Kind::ModernBert(m.with_head(pool, steps))
                    }
                    _ => Kind::ModernBert(modernbert::ModernBert::load(
                        &mc,
                        weights,
                        "model.",
                        Some(config.num_labels),
                        quantize,
                    )?),
                }
            }
            Architecture::Qwen3 | Architecture::Qwen2 => {
                let family = if config.architecture == Architecture::Qwen3 {
                    qwen::Family::Qwen3
                } else {
                    qwen::Family::Qwen2
                };
                let qc = qwen::QwenConfig::from_json(&config.json, family)
                    .map_err(|m| config_error(config, m))?;
                let score = match head {
                    HeadSpec::AnswerTokens { true_id, false_id } => {
                        qwen::ScoreHead::AnswerTokens { true_id, false_id }
                    }
                    _ if config.causal_lm => {
                        return Err(config_error(
                            config,
                            "a causal LM needs a prompt template with answer tokens".into(),
                        ))
                    }
                    _ => qwen::ScoreHead::Classifier {
                        labels: config.num_labels,
                    },
                };
                Kind::Decoder(qwen::Qwen::load(&qc, weights, score, quantize)?)
            }
        };
        Ok(SequenceClassifier {
            config: config.clone(),
            kind,
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Nominal FLOPs of a sequence of `len` tokens.
    pub fn model_flops(&self, len: usize) -> f64 {
        match &self.kind {
            Kind::Encoder { encoder, .. } => encoder.model_flops(len),
            Kind::ModernBert(m) => m.flops(len),
            Kind::Decoder(d) => d.flops(len),
        }
    }

    /// FLOPs the forward pass executes for a sequence of `len` tokens.
    pub fn executed_flops(&self, len: usize) -> f64 {
        match &self.kind {
            Kind::Encoder { encoder, .. } => encoder.first_token_flops(len),
            _ => self.model_flops(len),
        }
    }

    /// FLOPs [`Model::forward`] executes on `batch` (decoders run shared prefixes once).
    pub fn batch_flops(&self, batch: &PackedBatch) -> f64 {
        match &self.kind {
            Kind::Decoder(d) => d.batch_flops(batch),
            _ => batch
                .offsets
                .windows(2)
                .map(|w| self.executed_flops(w[1] - w[0]))
                .sum(),
        }
    }

    /// Appends one tokenised sequence to `batch` with this architecture's positions and types.
    pub fn push_sequence(&self, batch: &mut PackedBatch, ids: &[u32], type_ids: &[u32]) {
        push_sequence(&self.config, batch, ids, type_ids)
    }

    /// Logits of every sequence in `batch`.
    pub fn forward(&self, batch: &PackedBatch, ws: &mut Workspace) -> Vec<Vec<f32>> {
        match &self.kind {
            Kind::Encoder { encoder, head } => {
                encoder.forward_first_tokens(batch, ws);
                head.logits(&ws.first)
            }
            Kind::ModernBert(m) => m.forward(batch, &mut ws.modern),
            Kind::Decoder(d) => d.forward(batch, &mut ws.decoder),
        }
    }
}

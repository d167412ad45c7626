//! `config.json` of a Hugging Face transformers model, reduced to what the engine needs.

use crate::error::{EngineError, Result};
use serde::Deserialize;
use std::path::Path;

/// The model families the engine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// BERT-style encoder with a pooler and a linear classifier (ms-marco MiniLM, TinyBERT).
    Bert,
    /// XLM-RoBERTa / RoBERTa encoder with a dense+tanh+out_proj head (bge-reranker family).
    XlmRoberta,
    /// ModernBERT encoder (gte-reranker-modernbert, Ettin module chains).
    ModernBert,
    /// Qwen3 decoder (Qwen3-Reranker, its seq-cls conversions).
    Qwen3,
    /// Qwen2 decoder (mxbai-rerank-v2).
    Qwen2,
}

impl Architecture {
    /// The name reports and `/info` show ("Bert", "XlmRoberta", "ModernBert", "Qwen3", "Qwen2").
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Bert => "Bert",
            Architecture::XlmRoberta => "XlmRoberta",
            Architecture::ModernBert => "ModernBert",
            Architecture::Qwen3 => "Qwen3",
            Architecture::Qwen2 => "Qwen2",
        }
    }

    /// Whether the model has rotary positions and its own `config.json` reader.
    pub fn is_rotary(self) -> bool {
        matches!(
            self,
            Architecture::ModernBert | Architecture::Qwen3 | Architecture::Qwen2
        )
    }
    /// Whether it is a decoder scored at the last token.
    pub fn is_decoder(self) -> bool {
        matches!(self, Architecture::Qwen3 | Architecture::Qwen2)
    }
}

/// Activation of the feed-forward layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Exact GELU with erf (`gelu`).
    Gelu,
    /// Tanh approximation of GELU (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    /// ReLU.
    Relu,
}

#[derive(Debug, Deserialize)]
struct RawConfig {
    #[serde(default)]
    architectures: Option<Vec<String>>,
    #[serde(default)]
    model_type: Option<String>,
    hidden_size: usize,
    num_attention_heads: usize,
    num_hidden_layers: usize,
    intermediate_size: usize,
    #[serde(default = "default_positions")]
    max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    type_vocab_size: usize,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    #[serde(default)]
    pad_token_id: Option<usize>,
    #[serde(default = "default_act")]
    hidden_act: String,
    #[serde(default)]
    num_labels: Option<usize>,
    #[serde(default)]
    id2label: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    position_embedding_type: Option<String>,
    vocab_size: usize,
}

fn default_type_vocab() -> usize {
    2
}
fn default_positions() -> usize {
    512
}
fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}

/// A validated model configuration.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// Which family.
    pub architecture: Architecture,
    /// Hidden width.
    pub hidden_size: usize,
    /// Attention heads per layer.
    pub num_heads: usize,
    /// Transformer layers.
    pub num_layers: usize,
    /// Feed-forward width.
    pub intermediate_size: usize,
    /// Rows of the position-embedding table.
    pub max_position_embeddings: usize,
    /// Rows of the token-type table.
    pub type_vocab_size: usize,
    /// Rows of the word-embedding table.
    pub vocab_size: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f32,
    /// Padding id (XLM-R positions start at pad + 1).
    pub pad_token_id: usize,
    /// Feed-forward activation.
    pub activation: Activation,
    /// Outputs of the classifier.
    pub num_labels: usize,
    /// Whether config.json declares a sequence-classification head (a cross-encoder); base
    /// models (`BertModel`, a bi-encoder's transformer) do not.
    pub has_classifier: bool,
    /// A `*ForCausalLM` checkpoint, scored by answer-token logits through a prompt template.
    pub causal_lm: bool,
    /// The config.json text, for the architectures that read more of it.
    pub json: String,
}

impl ModelConfig {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| EngineError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(&text)
            .map_err(|message| EngineError::Config {
                path: path.to_path_buf(),
                message,
            })
            .and_then(|r| r)
    }

    /// Parses a config from JSON text. The outer error is a parse message, the inner one an
    /// unsupported architecture.
    fn from_json(text: &str) -> std::result::Result<Result<Self>, String> {
        let raw: RawConfig = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let archs = raw.architectures.clone().unwrap_or_default();
        let arch = match archs.first().map(String::as_str) {
            Some("BertForSequenceClassification") | Some("BertModel") => Some(Architecture::Bert),
            Some("XLMRobertaForSequenceClassification")
            | Some("RobertaForSequenceClassification")
            | Some("XLMRobertaModel")
            | Some("RobertaModel") => Some(Architecture::XlmRoberta),
            Some("ModernBertForSequenceClassification") | Some("ModernBertModel") => {
                Some(Architecture::ModernBert)
            }
            Some("Qwen3ForCausalLM") | Some("Qwen3ForSequenceClassification") => {
                Some(Architecture::Qwen3)
            }
            Some("Qwen2ForCausalLM") | Some("Qwen2ForSequenceClassification") => {
                Some(Architecture::Qwen2)
            }
            Some(_) => None,
            None => match raw.model_type.as_deref() {
                Some("bert") => Some(Architecture::Bert),
                Some("xlm-roberta") | Some("roberta") => Some(Architecture::XlmRoberta),
                Some("modernbert") => Some(Architecture::ModernBert),
                _ => None,
            },
        };
        let causal_lm = archs.first().is_some_and(|a| a.ends_with("ForCausalLM"));
        let Some(architecture) = arch else {
            return Ok(Err(EngineError::UnsupportedArchitecture {
                architectures: archs,
                model_type: raw.model_type,
            }));
        };
        if let Some(p) = raw.position_embedding_type.as_deref() {
            if p != "absolute" {
                return Err(format!(
                    "position_embedding_type {p:?} is not supported (only \"absolute\")"
                ));
            }
        }
        let activation = match raw.hidden_act.as_str() {
            // The rotary architectures read their own activation fields.
            _ if architecture.is_rotary() => Activation::Gelu,
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            other => return Err(format!("hidden_act {other:?} is not supported")),
        };
        if raw.hidden_size == 0
            || raw.num_attention_heads == 0
            || !raw.hidden_size.is_multiple_of(raw.num_attention_heads)
        {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                raw.hidden_size, raw.num_attention_heads
            ));
        }
        let num_labels = if causal_lm {
            1
        } else {
            raw.num_labels
                .or(raw.id2label.as_ref().map(|m| m.len()))
                .unwrap_or(2)
        };
        let has_classifier = match archs.first() {
            Some(a) => a.ends_with("ForSequenceClassification") || causal_lm,
            None => architecture != Architecture::ModernBert,
        };
        if has_classifier && !(1..=2).contains(&num_labels) {
            return Err(format!(
                "{num_labels} labels: a cross-encoder needs 1 (score = sigmoid) or 2 (score = softmax[1])"
            ));
        }
        let pad_token_id = raw.pad_token_id.unwrap_or(match architecture {
            Architecture::XlmRoberta => 1,
            _ => 0,
        });
        Ok(Ok(ModelConfig {
            has_classifier,
            architecture,
            hidden_size: raw.hidden_size,
            num_heads: raw.num_attention_heads,
            num_layers: raw.num_hidden_layers,
            intermediate_size: raw.intermediate_size,
            max_position_embeddings: raw.max_position_embeddings,
            type_vocab_size: raw.type_vocab_size.max(1),
            vocab_size: raw.vocab_size,
            layer_norm_eps: raw.layer_norm_eps as f32,
            pad_token_id,
            activation,
            num_labels,
            causal_lm,
            json: text.to_string(),
        }))
    }

    /// Number of positions a sequence can use: XLM-R reserves `pad_token_id + 1` rows.
    pub fn usable_positions(&self) -> usize {
        match self.architecture {
            Architecture::Bert
            | Architecture::ModernBert
            | Architecture::Qwen3
            | Architecture::Qwen2 => self.max_position_embeddings,
            Architecture::XlmRoberta => self
                .max_position_embeddings
                .saturating_sub(self.pad_token_id + 1),
        }
    }

    /// The default truncation length: min(512, usable positions), as the reference uses.
    pub fn default_max_length(&self) -> usize {
        self.usable_positions().min(512)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_architecture_names_fields() {
        let text = r#"{"architectures":["GPT2LMHeadModel"],"model_type":"gpt2","hidden_size":8,
            "num_attention_heads":2,"num_hidden_layers":1,"intermediate_size":8,
            "max_position_embeddings":16,"vocab_size":10}"#;
        let err = ModelConfig::from_json(text)
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("GPT2LMHeadModel") && err.contains("gpt2"),
            "{err}"
        );
    }

    #[test]
    fn xlmr_positions_are_offset() {
        let text = r#"{"architectures":["XLMRobertaForSequenceClassification"],"hidden_size":8,
            "num_attention_heads":2,"num_hidden_layers":1,"intermediate_size":8,
            "max_position_embeddings":514,"vocab_size":10,"pad_token_id":1,"num_labels":1}"#;
        let c = ModelConfig::from_json(text).unwrap().unwrap();
        assert_eq!(c.usable_positions(), 512);
        assert_eq!(c.default_max_length(), 512);
        assert_eq!(c.num_labels, 1);
    }
}

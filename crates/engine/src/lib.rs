//! crossrank's engine: exact cross-encoder inference on CPU.
//!
//! Loads Hugging Face rerankers (BERT, XLM-RoBERTa and ModernBERT sequence classifiers, Qwen3 /
//! Qwen2 decoder rerankers scored by answer tokens) from
//! safetensors, tokenises pairs with the model's `tokenizer.json`, and runs them with packed
//! tokens (no work on padding) on run-time-dispatched AVX-512 / AVX2 / portable kernels.
//!
//! ```no_run
//! use crossrank_engine::{CrossEncoder, CrossEncoderOptions};
//! let model = CrossEncoder::load("models/minilm-l6-rerank".as_ref(), CrossEncoderOptions::default())?;
//! let scores = model.predict(&[("what is rust", "Rust is a systems programming language.")])?;
//! println!("{}", scores[0].score);
//! # Ok::<(), crossrank_engine::EngineError>(())
//! ```

#![warn(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

pub mod backend;
pub mod bi_encoder;
pub mod config;
pub mod cross_encoder;
pub mod device;
pub mod error;
pub mod kernels;
pub mod models;
pub mod modules;
pub mod resolve;
pub mod templates;
pub mod tokenize;
pub mod vectors;
pub mod weights;

pub use bi_encoder::{BiEncoder, Pooling};
pub use config::{Architecture, ModelConfig};
pub use cross_encoder::{CrossEncoder, CrossEncoderOptions, Prediction, ScoreActivation};
pub use device::{Device, Dtype};
pub use error::{EngineError, Result};
pub use models::encoder::Quantize;
pub use resolve::{hf_cache_dir, resolve_model};
pub use templates::Template;
pub use tokenize::{Direction, Encoded, PairTokenizer};

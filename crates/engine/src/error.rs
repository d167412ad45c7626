//! The engine's error type.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running a model.
///
/// Every variant names the file, tensor or field involved so that a user can fix the input
/// without reading the source.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A required file of a model directory is missing.
    #[error("{dir} has no {file}: a model directory needs config.json, tokenizer.json and model.safetensors (or model.safetensors.index.json with its shards)")]
    MissingFile {
        /// The model directory.
        dir: PathBuf,
        /// The missing file's name.
        file: String,
    },
    /// config.json is not valid JSON or lacks a field.
    #[error("{path}: invalid model config: {message}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The model's architecture is not one the engine runs.
    #[error("unsupported model architecture: architectures = {architectures:?}, model_type = {model_type:?} (supported: BertForSequenceClassification, XLMRobertaForSequenceClassification, RobertaForSequenceClassification, ModernBertForSequenceClassification, ModernBertModel with a modules.json head, Qwen3ForCausalLM, Qwen3ForSequenceClassification, Qwen2ForCausalLM, Qwen2ForSequenceClassification; BertModel, XLMRobertaModel and RobertaModel as bi-encoders)")]
    UnsupportedArchitecture {
        /// `architectures` from config.json.
        architectures: Vec<String>,
        /// `model_type` from config.json.
        model_type: Option<String>,
    },
    /// A safetensors file is truncated or corrupt.
    #[error("{path}: invalid safetensors file: {message}")]
    Safetensors {
        /// The weights file.
        path: PathBuf,
        /// The parser's complaint.
        message: String,
    },
    /// A tensor the architecture needs is absent.
    #[error("tensor {name} (expected shape {shape:?}) not found in the model's weights (looked in {files})")]
    MissingTensor {
        /// The tensor's name.
        name: String,
        /// The shape the architecture expects.
        shape: Vec<usize>,
        /// The files searched.
        files: String,
    },
    /// A tensor has an unexpected shape or type.
    #[error("tensor {name}: {message}")]
    BadTensor {
        /// The tensor's name.
        name: String,
        /// What is wrong (expected vs found).
        message: String,
    },
    /// The tokenizer could not be loaded or failed on an input.
    #[error("tokenizer {path}: {message}")]
    Tokenizer {
        /// tokenizer.json.
        path: PathBuf,
        /// The tokenizer's message.
        message: String,
    },
    /// A model id could not be resolved to a local directory.
    #[error("{0}")]
    Resolve(String),
    /// The requested device cannot be used (no driver, no GPU, a library missing, a kernel
    /// that failed), or a model cannot run on it.
    #[error("device: {0}")]
    Device(String),
    /// An option is out of range.
    #[error("invalid option: {0}")]
    InvalidOption(String),
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, EngineError>;

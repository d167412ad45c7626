//! The public cross-encoder: load a model directory, score (query, passage) pairs.

use crate::config::ModelConfig;
use crate::error::{EngineError, Result};
use crate::models::encoder::{PackedBatch, Quantize, Workspace};
use crate::models::SequenceClassifier;
use crate::tokenize::{Encoded, PairTokenizer};
use crate::weights::Weights;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Options of [`CrossEncoder::load`]; every field has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct CrossEncoderOptions {
    /// Truncation length of a pair; default min(512, the model's usable positions).
    pub max_length: Option<usize>,
    /// Worker threads; default: all available cores.
    pub threads: Option<usize>,
    /// Most tokens in one forward pass (bounds memory; larger is faster up to a point).
    pub max_batch_tokens: usize,
    /// Most pairs in one forward pass, if set.
    pub max_batch_pairs: Option<usize>,
    /// Precision of the linear layers (`none` = fp32, `int8`).
    pub quantize: Quantize,
}

impl Default for CrossEncoderOptions {
    fn default() -> Self {
        CrossEncoderOptions {
            max_length: None,
            threads: None,
            max_batch_tokens: 16_384,
            max_batch_pairs: None,
            quantize: Quantize::None,
        }
    }
}

/// The output for one pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Raw classifier outputs (one or two).
    pub logits: Vec<f32>,
    /// Relevance probability: sigmoid(logit) for one label, softmax(logits)[1] for two.
    pub score: f32,
}

/// A loaded cross-encoder, safe to share between threads (calls are serialised internally).
pub struct CrossEncoder {
    dir: PathBuf,
    model: SequenceClassifier,
    tokenizer: PairTokenizer,
    pool: rayon::ThreadPool,
    options: CrossEncoderOptions,
    state: Mutex<(Workspace, PackedBatch)>,
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn score_of(logits: &[f32]) -> f32 {
    match logits {
        [l] => sigmoid(*l),
        [a, b] => sigmoid(b - a),
        _ => f32::NAN,
    }
}

impl CrossEncoder {
    /// Loads a model directory (config.json, tokenizer.json, safetensors weights).
    pub fn load(dir: &Path, options: CrossEncoderOptions) -> Result<Self> {
        let config_path = dir.join("config.json");
        if !config_path.is_file() {
            return Err(EngineError::MissingFile {
                dir: dir.to_path_buf(),
                file: "config.json".into(),
            });
        }
        let config = ModelConfig::from_file(&config_path)?;
        if !config.has_classifier {
            return Err(EngineError::Config {
                path: config_path,
                message: format!(
                    "{:?} is a base model without a sequence-classification head, not a cross-encoder (use it as a bi-encoder)",
                    config.architecture
                ),
            });
        }
        let tokenizer_path = dir.join("tokenizer.json");
        if !tokenizer_path.is_file() {
            return Err(EngineError::MissingFile {
                dir: dir.to_path_buf(),
                file: "tokenizer.json".into(),
            });
        }
        let usable = config.usable_positions();
        let max_length = match options.max_length {
            None => config.default_max_length(),
            Some(n) if n < 4 || n > usable => {
                return Err(EngineError::InvalidOption(format!(
                "max_length {n} is outside 4..={usable} (the model has {usable} usable positions)"
            )))
            }
            Some(n) => n,
        };
        let tokenizer = PairTokenizer::from_file(&tokenizer_path, max_length)?;
        let weights = Weights::from_dir(dir)?;
        let model = SequenceClassifier::load(&config, &weights, options.quantize)?;
        drop(weights);
        let threads = options.threads.filter(|&t| t > 0).unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("crossrank-{i}"))
            .build()
            .map_err(|e| EngineError::InvalidOption(format!("thread pool: {e}")))?;
        Ok(CrossEncoder {
            dir: dir.to_path_buf(),
            model,
            tokenizer,
            pool,
            options,
            state: Mutex::new((Workspace::default(), PackedBatch::default())),
        })
    }

    /// The model directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The model's configuration.
    pub fn config(&self) -> &ModelConfig {
        self.model.config()
    }

    /// The truncation length in use.
    pub fn max_length(&self) -> usize {
        self.tokenizer.max_length()
    }

    /// Number of worker threads.
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Nominal FLOPs of sequences of these lengths (all layers on all tokens).
    pub fn model_flops(&self, lengths: &[usize]) -> f64 {
        lengths
            .iter()
            .map(|&l| self.model.encoder().model_flops(l))
            .sum()
    }

    /// FLOPs the engine executes for sequences of these lengths (the last layer runs only the
    /// first token's query and feed-forward).
    pub fn executed_flops(&self, lengths: &[usize]) -> f64 {
        lengths
            .iter()
            .map(|&l| self.model.encoder().first_token_flops(l))
            .sum()
    }

    /// The pair tokenizer (for chunking and token counting).
    pub fn tokenizer(&self) -> &PairTokenizer {
        &self.tokenizer
    }

    /// Tokenises pairs exactly as the model will see them.
    pub fn tokenize<Q: AsRef<str> + Sync, P: AsRef<str> + Sync>(
        &self,
        pairs: &[(Q, P)],
    ) -> Result<Vec<Encoded>> {
        self.pool.install(|| self.tokenizer.encode_pairs(pairs))
    }

    /// Scores pairs; results are in input order. This is `CrossEncoder.predict`.
    pub fn predict<Q: AsRef<str> + Sync, P: AsRef<str> + Sync>(
        &self,
        pairs: &[(Q, P)],
    ) -> Result<Vec<Prediction>> {
        let encoded = self.tokenize(pairs)?;
        self.predict_encoded(&encoded)
    }

    /// Scores already tokenised pairs (see [`CrossEncoder::tokenize`]).
    pub fn predict_encoded<E: std::borrow::Borrow<Encoded>>(
        &self,
        encoded: &[E],
    ) -> Result<Vec<Prediction>> {
        let cfg = self.model.config();
        for (i, e) in encoded.iter().map(|e| e.borrow()).enumerate() {
            if e.ids.is_empty() || e.ids.len() > cfg.usable_positions() {
                return Err(EngineError::InvalidOption(format!(
                    "pair {i}: {} tokens, outside 1..={}",
                    e.ids.len(),
                    cfg.usable_positions()
                )));
            }
            if let Some(&bad) = e.ids.iter().find(|&&id| id as usize >= cfg.vocab_size) {
                return Err(EngineError::InvalidOption(format!(
                    "pair {i}: token id {bad} is outside the model's vocabulary of {}",
                    cfg.vocab_size
                )));
            }
            if let Some(&bad) = e
                .type_ids
                .iter()
                .find(|&&t| t as usize >= cfg.type_vocab_size)
            {
                if cfg.type_vocab_size > 1 {
                    return Err(EngineError::InvalidOption(format!(
                        "pair {i}: token type {bad} is outside the model's {} types",
                        cfg.type_vocab_size
                    )));
                }
            }
        }
        let mut out: Vec<Prediction> = Vec::with_capacity(encoded.len());
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (ws, batch) = &mut *guard;
        let max_pairs = self.options.max_batch_pairs.unwrap_or(usize::MAX).max(1);
        let mut start = 0;
        while start < encoded.len() {
            batch.clear();
            let mut end = start;
            let mut tokens = 0;
            while end < encoded.len()
                && (end == start
                    || (tokens + encoded[end].borrow().ids.len() <= self.options.max_batch_tokens
                        && end - start < max_pairs))
            {
                tokens += encoded[end].borrow().ids.len();
                self.model.push_sequence(
                    batch,
                    &encoded[end].borrow().ids,
                    &encoded[end].borrow().type_ids,
                );
                end += 1;
            }
            let logits = self.pool.install(|| self.model.forward(batch, ws));
            out.extend(logits.into_iter().map(|l| Prediction {
                score: score_of(&l),
                logits: l,
            }));
            start = end;
        }
        Ok(out)
    }
}

//! Bi-encoders in the sentence-transformers layout: a transformer (`config.json`, weights,
//! `tokenizer.json`), `1_Pooling/config.json` (CLS, mean, max or mean-sqrt-len pooling) and an
//! optional `Normalize` module in `modules.json`; texts truncated to `max_seq_length` from
//! `sentence_bert_config.json`. Runs on the same packed-token encoder as the cross-encoders.

use crate::backend::{batches, CpuEncoder, EmbedBackend};
use crate::config::ModelConfig;
use crate::error::{EngineError, Result};
use crate::models::encoder::{Encoder, PackedBatch, Quantize};
use crate::models::{encoder_prefixes, push_sequence};
use crate::tokenize::PairTokenizer;
use crate::weights::Weights;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// How token states become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The first token.
    Cls,
    /// Mean over tokens.
    Mean,
    /// Element-wise max over tokens.
    Max,
    /// Sum over tokens divided by sqrt(tokens).
    MeanSqrtLen,
}

/// A loaded bi-encoder.
pub struct BiEncoder {
    dir: PathBuf,
    config: ModelConfig,
    backend: Box<dyn EmbedBackend>,
    tokenizer: PairTokenizer,
    pooling: Pooling,
    normalize: bool,
    /// Tokenisation threads (the CPU backend computes on the same pool).
    pool: Arc<rayon::ThreadPool>,
    batch: Mutex<PackedBatch>,
    max_batch_tokens: usize,
}

fn read_json(path: &Path) -> Result<Option<serde_json::Value>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| EngineError::Config {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

impl BiEncoder {
    /// Loads a sentence-transformers directory (`threads` None = all cores).
    pub fn load(dir: &Path, threads: Option<usize>) -> Result<Self> {
        let config = ModelConfig::from_file(&dir.join("config.json"))?;
        let modules = read_json(&dir.join("modules.json"))?;
        let module_types: Vec<(String, String)> = modules
            .as_ref()
            .and_then(|m| m.as_array())
            .map(|a| {
                a.iter()
                    .map(|m| {
                        (
                            m["type"].as_str().unwrap_or_default().to_string(),
                            m["path"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let normalize = module_types.iter().any(|(t, _)| t.ends_with("Normalize"));
        let pooling_dir = module_types
            .iter()
            .find(|(t, _)| t.ends_with("Pooling"))
            .map(|(_, p)| dir.join(p))
            .unwrap_or_else(|| dir.join("1_Pooling"));
        let pooling = match read_json(&pooling_dir.join("config.json"))? {
            Some(p) => {
                let on = |k: &str| p[k].as_bool().unwrap_or(false);
                if on("pooling_mode_cls_token") {
                    Pooling::Cls
                } else if on("pooling_mode_max_tokens") {
                    Pooling::Max
                } else if on("pooling_mode_mean_sqrt_len_tokens") {
                    Pooling::MeanSqrtLen
                } else {
                    Pooling::Mean
                }
            }
            None => Pooling::Mean,
        };
        let max_len = read_json(&dir.join("sentence_bert_config.json"))?
            .and_then(|c| c["max_seq_length"].as_u64())
            .map(|n| n as usize)
            .unwrap_or(config.default_max_length())
            .min(config.usable_positions());
        let tokenizer_path = dir.join("tokenizer.json");
        if !tokenizer_path.is_file() {
            return Err(EngineError::MissingFile {
                dir: dir.to_path_buf(),
                file: "tokenizer.json".into(),
            });
        }
        let tokenizer = PairTokenizer::from_file(&tokenizer_path, max_len)?;
        let weights = Weights::from_dir(dir)?;
        let encoder = Encoder::load(
            &config,
            &weights,
            encoder_prefixes(config.architecture),
            Quantize::None,
        )?;
        let threads = threads.filter(|&t| t > 0).unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
        let pool = Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .map_err(|e| EngineError::InvalidOption(format!("thread pool: {e}")))?,
        );
        Ok(BiEncoder {
            dir: dir.to_path_buf(),
            backend: Box::new(CpuEncoder::new(encoder, config.hidden_size, pool.clone())),
            config,
            tokenizer,
            pooling,
            normalize,
            pool,
            batch: Mutex::new(PackedBatch::default()),
            max_batch_tokens: 16_384,
        })
    }

    /// The model directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// Embedding width.
    pub fn dim(&self) -> usize {
        self.config.hidden_size
    }
    /// The pooling in use.
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }
    /// Whether embeddings are L2-normalised.
    pub fn normalizes(&self) -> bool {
        self.normalize
    }
    /// The tokenizer (its `max_length` is the model's `max_seq_length`).
    pub fn tokenizer(&self) -> &PairTokenizer {
        &self.tokenizer
    }

    /// Embeds texts, in input order.
    pub fn embed<T: AsRef<str> + Sync>(&self, texts: &[T]) -> Result<Vec<Vec<f32>>> {
        let encoded = self.pool.install(|| self.tokenizer.encode_texts(texts))?;
        let mut out = Vec::with_capacity(texts.len());
        for (i, e) in encoded.iter().enumerate() {
            // A tokenizer without a post-processor gives no tokens for an empty text, and a
            // sequence of no tokens has nothing to pool.
            if e.ids.is_empty() || e.ids.len() > self.config.usable_positions() {
                return Err(EngineError::InvalidOption(format!(
                    "text {i}: {} tokens, outside 1..={} for this bi-encoder",
                    e.ids.len(),
                    self.config.usable_positions()
                )));
            }
            if let Some(&bad) = e
                .ids
                .iter()
                .find(|&&id| id as usize >= self.config.vocab_size)
            {
                return Err(EngineError::InvalidOption(format!(
                    "text {i}: token id {bad} outside the vocabulary"
                )));
            }
        }
        let lengths: Vec<usize> = encoded.iter().map(|e| e.ids.len()).collect();
        let mut batch = self.batch.lock().unwrap_or_else(|p| p.into_inner());
        for range in batches(&lengths, self.max_batch_tokens, usize::MAX) {
            batch.clear();
            for e in &encoded[range] {
                push_sequence(&self.config, &mut batch, &e.ids, &e.type_ids);
            }
            out.extend(self.backend.embed(&batch, self.pooling, self.normalize)?);
        }
        Ok(out)
    }
}

//! The public cross-encoder: load a model directory, score (query, passage) pairs.

use crate::backend::cuda::CudaBackend;
use crate::backend::{batches, place, Backend, CpuBackend, Placement};
use crate::config::ModelConfig;
use crate::device::{Device, Dtype};
use crate::error::{EngineError, Result};
use crate::models::blocks::Act;
use crate::models::encoder::{PackedBatch, Quantize};
use crate::models::{push_sequence, HeadSpec, SequenceClassifier};
use crate::templates::{Prompter, Template};
use crate::tokenize::{Encoded, PairTokenizer};
use crate::weights::Weights;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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
    /// Prompt template of a decoder reranker; None: found from the checkpoint.
    pub template: Option<Template>,
    /// Where to run: cpu, cuda:N or auto (the default: a GPU when one is usable).
    pub device: Device,
    /// GEMM operand type on a GPU (default bf16); the CPU runs f32 only.
    pub dtype: Option<Dtype>,
}

impl Default for CrossEncoderOptions {
    fn default() -> Self {
        CrossEncoderOptions {
            max_length: None,
            threads: None,
            max_batch_tokens: 16_384,
            max_batch_pairs: None,
            quantize: Quantize::None,
            template: None,
            device: Device::Auto,
            dtype: None,
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
    config: ModelConfig,
    backend: Box<dyn Backend>,
    tokenizer: PairTokenizer,
    /// Tokenisation threads (the CPU backend computes on the same pool).
    pool: Arc<rayon::ThreadPool>,
    options: CrossEncoderOptions,
    prompter: Option<Prompter>,
    activation: ScoreActivation,
    batch: Mutex<PackedBatch>,
    device_note: Option<String>,
}

/// How a pair's logits become its score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreActivation {
    /// sigmoid(logit) for one label, softmax(logits)[1] for two (the default).
    Sigmoid,
    /// The logit itself (`activation_fn: Identity` in config_sentence_transformers.json).
    Identity,
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn score_of(logits: &[f32], activation: ScoreActivation) -> f32 {
    match (logits, activation) {
        ([l], ScoreActivation::Sigmoid) => sigmoid(*l),
        ([l], ScoreActivation::Identity) => *l,
        ([a, b], ScoreActivation::Sigmoid) => sigmoid(b - a),
        ([a, b], ScoreActivation::Identity) => b - a,
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
        let chain = if config.has_classifier {
            None
        } else {
            crate::modules::read_chain(dir, config.hidden_size)?
        };
        if !config.has_classifier && chain.is_none() {
            return Err(EngineError::Config {
                path: config_path,
                message: format!(
                    "{:?} is a base model without a sequence-classification head, not a cross-encoder (use it as a bi-encoder)",
                    config.architecture
                ),
            });
        }
        if chain.is_some() && config.architecture != crate::config::Architecture::ModernBert {
            return Err(EngineError::Config {
                path: dir.join("modules.json"),
                message: format!(
                    "module chains are supported on ModernBERT backbones, not {:?}",
                    config.architecture
                ),
            });
        }
        let template = match options.template {
            Some(t) => t,
            None => Template::detect(dir, &config)?,
        };
        if !template.fits(config.architecture) {
            return Err(EngineError::InvalidOption(format!(
                "template {} is for decoder rerankers, not {:?}",
                template.name(),
                config.architecture
            )));
        }
        if config.causal_lm && template == Template::None {
            return Err(EngineError::InvalidOption(format!(
                "{} is a causal LM: it is scored through a prompt template (--template qwen3-reranker or mxbai-rerank-v2)",
                dir.display()
            )));
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
        let prompter = match template {
            Template::None => None,
            t => Some(Prompter::new(t, &tokenizer, max_length, usable)?),
        };
        let head = match (&prompter, chain) {
            (_, Some(c)) => HeadSpec::Chain {
                pool: c.pool,
                steps: c.steps,
            },
            (Some(p), None) if config.causal_lm => match p.answer_ids(&tokenizer)? {
                Some((true_id, false_id)) => HeadSpec::AnswerTokens { true_id, false_id },
                None => HeadSpec::Native,
            },
            _ => HeadSpec::Native,
        };
        let activation = match crate::modules::activation_fn(dir)? {
            Some(Act::Identity) => ScoreActivation::Identity,
            Some(Act::Sigmoid) | None => ScoreActivation::Sigmoid,
            Some(other) => {
                return Err(EngineError::InvalidOption(format!(
                    "activation_fn {other:?} in config_sentence_transformers.json is not supported for scores (Sigmoid or Identity)"
                )))
            }
        };
        let placement = place(
            options.device,
            options.dtype,
            config.architecture,
            options.quantize,
        )?;
        let weights = Weights::from_dir(dir)?;
        let threads = options.threads.filter(|&t| t > 0).unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
        let pool = Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(|i| format!("crossrank-{i}"))
                .build()
                .map_err(|e| EngineError::InvalidOption(format!("thread pool: {e}")))?,
        );
        let (gpu, mut device_note) = match placement {
            Placement::Cuda { info, dtype } => {
                match CudaBackend::load(&config, &weights, info, dtype) {
                    Ok(b) => (Some(b), None),
                    // `auto` falls back to the CPU when the GPU cannot take the model.
                    Err(e) if options.device == Device::Auto => {
                        (None, Some(format!("device auto: cpu ({e})")))
                    }
                    Err(e) => return Err(e),
                }
            }
            Placement::Cpu { note } => (None, note),
        };
        let backend: Box<dyn Backend> = match gpu {
            Some(b) => Box::new(b),
            None => {
                let model = SequenceClassifier::load(&config, &weights, options.quantize, head)?;
                Box::new(CpuBackend::new(model, pool.clone()))
            }
        };
        drop(weights);
        if device_note.is_none() && backend.device() != "cpu" {
            device_note = Some(format!(
                "device {}: {} ({}, {})",
                options.device,
                backend.device(),
                backend.device_name(),
                backend.dtype()
            ));
        }
        Ok(CrossEncoder {
            dir: dir.to_path_buf(),
            config: config.clone(),
            backend,
            tokenizer,
            pool,
            options,
            prompter,
            activation,
            batch: Mutex::new(PackedBatch::default()),
            device_note,
        })
    }

    /// The model directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The model's configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The device the forward passes run on ("cpu").
    pub fn device(&self) -> String {
        self.backend.device()
    }

    /// The device's own name (the GPU's model, or "cpu").
    pub fn device_name(&self) -> String {
        self.backend.device_name()
    }

    /// The GEMM operand type the backend computes with.
    pub fn dtype(&self) -> Dtype {
        self.backend.dtype()
    }

    /// Device memory the model holds, where the device has its own (a GPU).
    pub fn device_memory(&self) -> Option<usize> {
        self.backend.memory_bytes()
    }

    /// What `--device` chose and why, when it was not simply the CPU asked for: a GPU taken
    /// ("device auto: cuda:0 (NVIDIA H200, bf16)") or `auto` falling back to the CPU.
    pub fn device_note(&self) -> Option<&str> {
        self.device_note.as_deref()
    }

    /// The truncation length in use.
    pub fn max_length(&self) -> usize {
        self.tokenizer.max_length()
    }

    /// Number of worker threads.
    pub fn threads(&self) -> usize {
        self.backend.threads()
    }

    /// Nominal FLOPs of sequences of these lengths (all layers on all tokens).
    pub fn model_flops(&self, lengths: &[usize]) -> f64 {
        lengths.iter().map(|&l| self.backend.flops(l).0).sum()
    }

    /// FLOPs the engine executes to score these encodings, batched as [`Self::predict_encoded`]
    /// batches them (the BERT family's last layer runs only the first token; decoders run a
    /// batch's shared prompt prefixes once).
    pub fn executed_flops(&self, encoded: &[Encoded]) -> f64 {
        let mut flops = 0.0;
        let mut batch = PackedBatch::default();
        // Counting cannot fail: the closure only adds.
        let _ = self.for_each_batch(encoded, &mut batch, |b| {
            flops += self.backend.batch_flops(b);
            Ok(())
        });
        flops
    }

    /// Packs `encoded` into `batch` one forward pass at a time, as the token and pair budgets
    /// cut it, and calls `f` on each pass in order.
    fn for_each_batch<E: std::borrow::Borrow<Encoded>>(
        &self,
        encoded: &[E],
        batch: &mut PackedBatch,
        mut f: impl FnMut(&PackedBatch) -> Result<()>,
    ) -> Result<()> {
        let lengths: Vec<usize> = encoded.iter().map(|e| e.borrow().ids.len()).collect();
        let max_pairs = self.options.max_batch_pairs.unwrap_or(usize::MAX);
        for range in batches(&lengths, self.options.max_batch_tokens, max_pairs) {
            batch.clear();
            for e in &encoded[range] {
                let e = e.borrow();
                push_sequence(&self.config, batch, &e.ids, &e.type_ids);
            }
            f(batch)?;
        }
        Ok(())
    }

    /// The pair tokenizer (for chunking and token counting).
    pub fn tokenizer(&self) -> &PairTokenizer {
        &self.tokenizer
    }

    /// Tokenises pairs exactly as the model will see them (the template's default
    /// instruction, if it has one).
    pub fn tokenize<Q: AsRef<str> + Sync, P: AsRef<str> + Sync>(
        &self,
        pairs: &[(Q, P)],
    ) -> Result<Vec<Encoded>> {
        self.tokenize_with(pairs, None)
    }

    /// Tokenises pairs with an instruction (used by templates that take one; ignored by
    /// models without a template).
    pub fn tokenize_with<Q: AsRef<str> + Sync, P: AsRef<str> + Sync>(
        &self,
        pairs: &[(Q, P)],
        instruction: Option<&str>,
    ) -> Result<Vec<Encoded>> {
        match &self.prompter {
            None => self.pool.install(|| self.tokenizer.encode_pairs(pairs)),
            Some(p) => self.pool.install(|| {
                use rayon::prelude::*;
                pairs
                    .par_iter()
                    .map(|(q, d)| p.encode(&self.tokenizer, q.as_ref(), d.as_ref(), instruction))
                    .collect()
            }),
        }
    }

    /// The prompt template in use (`Template::None` for encoders).
    pub fn template(&self) -> Template {
        self.prompter
            .as_ref()
            .map(Prompter::template)
            .unwrap_or_default()
    }

    /// How logits become scores.
    pub fn score_activation(&self) -> ScoreActivation {
        self.activation
    }

    /// Tokens of a pair before any truncation, as the model would see it.
    pub fn untruncated_len(
        &self,
        query: &str,
        doc: &str,
        instruction: Option<&str>,
    ) -> Result<usize> {
        match &self.prompter {
            None => self.tokenizer.untruncated_pair_len(query, doc),
            Some(p) => p.untruncated_len(&self.tokenizer, query, doc, instruction),
        }
    }

    /// Scores pairs; results are in input order. This is `CrossEncoder.predict`.
    pub fn predict<Q: AsRef<str> + Sync, P: AsRef<str> + Sync>(
        &self,
        pairs: &[(Q, P)],
    ) -> Result<Vec<Prediction>> {
        self.predict_with(pairs, None)
    }

    /// Scores pairs with an instruction (see [`CrossEncoder::tokenize_with`]).
    pub fn predict_with<Q: AsRef<str> + Sync, P: AsRef<str> + Sync>(
        &self,
        pairs: &[(Q, P)],
        instruction: Option<&str>,
    ) -> Result<Vec<Prediction>> {
        let encoded = self.tokenize_with(pairs, instruction)?;
        self.predict_encoded(&encoded)
    }

    /// Scores already tokenised pairs (see [`CrossEncoder::tokenize`]).
    pub fn predict_encoded<E: std::borrow::Borrow<Encoded>>(
        &self,
        encoded: &[E],
    ) -> Result<Vec<Prediction>> {
        let cfg = &self.config;
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
        let mut batch = self.batch.lock().unwrap_or_else(|p| p.into_inner());
        self.for_each_batch(encoded, &mut batch, |b| {
            let logits = self.backend.classify(b)?;
            out.extend(logits.into_iter().map(|l| Prediction {
                score: score_of(&l, self.activation),
                logits: l,
            }));
            Ok(())
        })?;
        Ok(out)
    }
}

//! Rerankers: the interface every stage above the engine uses to rank documents for a query,
//! with local cross-encoders and hosted APIs ([`hosted`]) behind it.

pub mod cache;
pub mod calibration;
pub mod cascade;
pub mod fusion;
pub mod hosted;
pub mod long_docs;

use crossrank_engine::{CrossEncoder, EngineError};
use long_docs::LongDocs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Errors of a reranker.
#[derive(Debug, thiserror::Error)]
pub enum RankError {
    /// The local engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A document does not fit the model and the policy refuses to truncate it.
    #[error("document {index} is {tokens} tokens together with the query; the model takes {max} and truncation is disabled")]
    TooLong {
        /// Input position of the document.
        index: usize,
        /// Its tokens with the query and special tokens.
        tokens: usize,
        /// The model's window.
        max: usize,
    },
    /// The request is over a size limit of the reranker (tokens per request, ...).
    #[error("{0}")]
    TooLarge(String),
    /// The request cannot be served as asked (a policy the provider cannot apply, ...).
    #[error("{0}")]
    Unsupported(String),
    /// A bug (an invariant did not hold), or the engine failed on a batch.
    #[error("internal error: {0}")]
    Internal(String),
    /// The reranker is busy: the request was not admitted (a full queue, a deadline it would
    /// miss). Retrying after `retry_after` seconds may succeed.
    #[error("{message}")]
    Overloaded {
        /// What is busy, and how.
        message: String,
        /// Seconds until the backlog is expected to drain.
        retry_after: u64,
    },
    /// The reranker could not answer: its worker stopped, the deadline passed, or the request
    /// was cancelled.
    #[error("{0}")]
    Unavailable(String),
    /// A hosted provider failed (after retries, where retrying made sense).
    #[error("{provider}{}: {message}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Provider {
        /// cohere, voyage, jina, tei, crossrank.
        provider: String,
        /// HTTP status, when there was a response.
        status: Option<u16>,
        /// What went wrong.
        message: String,
    },
}

/// What a reranker's scores mean, so thresholds and fusion know what they get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreKind {
    /// The model's probability: sigmoid(logit), or softmax[1] for two labels.
    Probability,
    /// A hosted provider's relevance score in [0, 1], in its own (uncalibrated) scale.
    ProviderRelevance,
}

/// One ranked document.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    /// Position of the document in the input.
    pub index: usize,
    /// Relevance probability in [0, 1].
    pub score: f32,
    /// Raw model output (the positive-class logit, or logit difference for two labels); for
    /// hosted rerankers, the logit of their score (same order).
    pub logit: f32,
}

/// Per-request options of [`Reranker::score_with`]; `None` keeps the reranker's own setting.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScoreOptions {
    /// How documents longer than the model's window are handled.
    pub long_docs: Option<LongDocs>,
    /// Instruction for models whose prompt template takes one (ignored by the others).
    pub instruction: Option<String>,
    /// Answer by then or fail with [`RankError::Unavailable`] (rerankers that wait on a queue
    /// honour it; a local model scoring in the caller's thread just finishes).
    pub deadline: Option<Instant>,
    /// Set when the caller has gone (a client disconnected): queued work not yet started is
    /// dropped.
    pub cancel: Option<Cancel>,
    /// A latency budget (a request's `deadline_ms`): a [`cascade::Cascade`] answers with the
    /// best ranking finished by then instead of failing. Other rerankers ignore it.
    pub budget: Option<Instant>,
}

/// A cancellation flag shared between a caller and a reranker; equal when it is the same flag.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// Cancels: work not yet started is dropped.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
    /// Whether [`Cancel::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
    /// The flag itself, for a queue that checks it.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.0.clone()
    }
    /// A guard that cancels when dropped, unless [`CancelOnDrop::disarm`]ed first: hold it in
    /// a future so that dropping the future (a client gone) cancels the work.
    pub fn on_drop(&self) -> CancelOnDrop {
        CancelOnDrop(Some(self.clone()))
    }
}

impl PartialEq for Cancel {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// See [`Cancel::on_drop`].
#[derive(Debug)]
pub struct CancelOnDrop(Option<Cancel>);

impl CancelOnDrop {
    /// The work finished: dropping the guard no longer cancels.
    pub fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.cancel();
        }
    }
}

/// Scores with accounting, as [`Reranker::score_detailed`] returns them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scored {
    /// One per document, input order.
    pub ranked: Vec<Ranked>,
    /// Tokens scored (every chunk, special tokens included; an estimate for hosted rerankers).
    pub tokens: usize,
    /// What each stage did, for a cascade.
    pub cascade: Option<cascade::CascadeReport>,
    /// Where the time went, for rerankers that measure it (the server's queued models).
    pub timings: Option<Timings>,
}

/// Milliseconds a scoring call spent in each phase.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Timings {
    /// Tokenising (and chunking) the pairs.
    pub tokenize_ms: f64,
    /// Waiting for the first pair to enter an engine batch.
    pub queue_ms: f64,
    /// From the first batch to the last prediction.
    pub inference_ms: f64,
}

/// Both calls' times added (a cascade's stages).
impl std::ops::Add for Timings {
    type Output = Timings;
    fn add(self, other: Timings) -> Timings {
        Timings {
            tokenize_ms: self.tokenize_ms + other.tokenize_ms,
            queue_ms: self.queue_ms + other.queue_ms,
            inference_ms: self.inference_ms + other.inference_ms,
        }
    }
}

/// Anything that scores documents against a query.
pub trait Reranker: Send + Sync {
    /// A name for reports (model directory or provider spec).
    fn name(&self) -> String;
    /// What the scores mean.
    fn score_kind(&self) -> ScoreKind {
        ScoreKind::Probability
    }
    /// Scores every document, in input order, with per-request options, and counts the tokens
    /// scored. The one method an implementation must provide.
    fn score_detailed(
        &self,
        query: &str,
        documents: &[&str],
        opts: &ScoreOptions,
    ) -> Result<Scored, RankError>;

    /// Scores every document, in input order, with per-request options.
    fn score_with(
        &self,
        query: &str,
        documents: &[&str],
        opts: &ScoreOptions,
    ) -> Result<Vec<Ranked>, RankError> {
        Ok(self.score_detailed(query, documents, opts)?.ranked)
    }

    /// Scores every document, in input order, with the reranker's own defaults.
    fn score(&self, query: &str, documents: &[&str]) -> Result<Vec<Ranked>, RankError> {
        self.score_with(query, documents, &ScoreOptions::default())
    }

    /// Scores and sorts by score, descending (ties keep input order), keeping `top_n`.
    fn rerank(
        &self,
        query: &str,
        documents: &[&str],
        top_n: Option<usize>,
    ) -> Result<Vec<Ranked>, RankError> {
        let mut ranked = self.score(query, documents)?;
        sort_ranked(&mut ranked);
        if let Some(n) = top_n {
            ranked.truncate(n);
        }
        Ok(ranked)
    }
}

/// A shared reranker is a reranker (the server holds its models as `Arc<dyn Reranker>`).
impl<T: Reranker + ?Sized> Reranker for Arc<T> {
    fn name(&self) -> String {
        (**self).name()
    }
    fn score_kind(&self) -> ScoreKind {
        (**self).score_kind()
    }
    fn score_detailed(
        &self,
        query: &str,
        documents: &[&str],
        opts: &ScoreOptions,
    ) -> Result<Scored, RankError> {
        (**self).score_detailed(query, documents, opts)
    }
}

/// Sorts by score descending, then by input index; NaN last.
pub fn sort_ranked(ranked: &mut [Ranked]) {
    ranked.sort_by(|a, b| {
        b.score
            .partial_cmp(&a.score)
            .unwrap_or_else(|| a.score.is_nan().cmp(&b.score.is_nan()))
            .then(a.index.cmp(&b.index))
    });
}

/// A local cross-encoder run by the engine.
pub struct LocalReranker {
    model: CrossEncoder,
    instruction: Option<String>,
    long_docs: LongDocs,
}

impl LocalReranker {
    /// Wraps a loaded model (long documents truncated on the right).
    pub fn new(model: CrossEncoder) -> Self {
        LocalReranker {
            model,
            instruction: None,
            long_docs: LongDocs::default(),
        }
    }
    /// Handles long documents this way unless a request says otherwise.
    pub fn with_long_docs(mut self, long_docs: LongDocs) -> Self {
        self.long_docs = long_docs;
        self
    }
    /// Scores with this instruction (for models whose template takes one).
    pub fn with_instruction(mut self, instruction: Option<String>) -> Self {
        self.instruction = instruction;
        self
    }
    /// The engine model.
    pub fn model(&self) -> &CrossEncoder {
        &self.model
    }
}

impl Reranker for LocalReranker {
    fn name(&self) -> String {
        self.model.dir().display().to_string()
    }

    fn score_detailed(
        &self,
        query: &str,
        documents: &[&str],
        opts: &ScoreOptions,
    ) -> Result<Scored, RankError> {
        let instruction = opts.instruction.as_deref().or(self.instruction.as_deref());
        let policy = opts.long_docs.unwrap_or(self.long_docs);
        let prepared = long_docs::prepare(&self.model, query, documents, instruction, policy)?;
        let predictions = self.model.predict_encoded(&prepared.pairs)?;
        Ok(Scored {
            tokens: prepared.tokens(),
            ranked: prepared.owners.fold(&predictions)?,
            cascade: None,
            timings: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_is_descending_stable_and_nan_last() {
        let mk = |index, score| Ranked {
            index,
            score,
            logit: 0.0,
        };
        let mut v = vec![mk(0, 0.2), mk(1, f32::NAN), mk(2, 0.9), mk(3, 0.2)];
        sort_ranked(&mut v);
        let order: Vec<usize> = v.iter().map(|r| r.index).collect();
        assert_eq!(order, vec![2, 0, 3, 1]);
    }
}

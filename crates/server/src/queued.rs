//! A local model served through its batching queue, as a [`Reranker`]: the server scores
//! local and hosted models through the same trait the CLI and the search pipeline use.
//!
//! `score_detailed` blocks (tokenisation, then the wait for the queue); the server calls it on
//! a blocking thread. The long-document policy is `rank`'s, so a document scores the same here
//! as in `crossrank rerank`.

use crate::batcher::{Batcher, Failure, Health, QueueLimits, Refused, Unanswered};
use crate::metrics::Metrics;
use crossrank_engine::CrossEncoder;
use crossrank_rank::long_docs::{prepare, LongDocs};
use crossrank_rank::{RankError, Reranker, ScoreOptions, Scored, Timings};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Per-request limits a queued model enforces (see `ServerConfig`).
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// Tokens one request may put through the engine, all chunks counted.
    pub max_request_tokens: usize,
    /// The most chunks per document a request may ask for.
    pub max_chunks_per_doc: usize,
}

/// A cross-encoder behind its dynamic-batching queue.
pub struct QueuedReranker {
    name: String,
    model: Arc<CrossEncoder>,
    batcher: Batcher,
    metrics: Arc<Metrics>,
    limits: RequestLimits,
}

impl QueuedReranker {
    /// Starts the model's batching worker (after a short warm-up that measures throughput).
    pub fn new(
        name: &str,
        model: Arc<CrossEncoder>,
        queue: QueueLimits,
        limits: RequestLimits,
        metrics: Arc<Metrics>,
    ) -> Self {
        let batcher = Batcher::new(model.clone(), name, queue, metrics.clone());
        QueuedReranker {
            name: name.to_string(),
            model,
            batcher,
            metrics,
            limits,
        }
    }

    /// The engine model.
    pub fn model(&self) -> &CrossEncoder {
        &self.model
    }

    /// Requests waiting now.
    pub fn depth(&self) -> usize {
        self.batcher.depth()
    }

    /// Predicted time until the backlog is scored.
    pub fn predicted_wait(&self) -> Duration {
        self.batcher.predicted_wait()
    }

    /// Measured throughput, once known.
    pub fn tokens_per_s(&self) -> Option<f64> {
        self.batcher.tokens_per_s()
    }

    /// The worker's health.
    pub fn health(&self) -> Health {
        self.batcher.health()
    }

    fn refusal(&self, refused: Refused) -> RankError {
        let name = &self.name;
        match refused {
            Refused::QueueFull { depth, retry_after } => {
                self.metrics.refused(name, "queue_full");
                RankError::Overloaded {
                    message: format!(
                        "the queue of model {name} is full ({depth} requests waiting); retry later"
                    ),
                    retry_after,
                }
            }
            Refused::TooSlow {
                predicted_ms,
                max_queue_ms,
                retry_after,
            } => {
                self.metrics.refused(name, "deadline");
                RankError::Overloaded {
                    message: format!(
                        "model {name} would answer in about {predicted_ms} ms, over max_queue_ms \
                         ({max_queue_ms}); retry in {retry_after} s or elsewhere"
                    ),
                    retry_after,
                }
            }
        }
    }
}

impl Reranker for QueuedReranker {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn score_detailed(
        &self,
        query: &str,
        documents: &[&str],
        opts: &ScoreOptions,
    ) -> Result<Scored, RankError> {
        let policy = opts.long_docs.unwrap_or_default();
        if let LongDocs::Chunk { max_chunks, .. } = policy {
            let limit = self.limits.max_chunks_per_doc;
            if max_chunks > limit {
                return Err(RankError::Unsupported(format!(
                    "max_chunks_per_doc is {max_chunks}; the limit (max_chunks_per_doc) is {limit}"
                )));
            }
        }
        // Refuse before tokenising when the backlog alone is already past the deadline.
        self.batcher.precheck().map_err(|r| self.refusal(r))?;
        let t0 = Instant::now();
        let prepared = prepare(
            &self.model,
            query,
            documents,
            opts.instruction.as_deref(),
            policy,
        )?;
        let tokenize_ms = t0.elapsed().as_secs_f64() * 1e3;
        let tokens = prepared.tokens();
        let max_tokens = self.limits.max_request_tokens;
        if tokens > max_tokens {
            return Err(RankError::TooLarge(format!(
                "the request puts {tokens} tokens through the engine ({} pairs after chunking); \
                 the limit (max_request_tokens) is {max_tokens}",
                prepared.pairs.len()
            )));
        }
        let cancel = opts.cancel.as_ref().map(|c| c.flag());
        let window = self.model.max_length();
        let lengths: Vec<usize> = prepared.pairs.iter().map(|p| p.ids.len()).collect();
        let t1 = Instant::now();
        let ticket = self
            .batcher
            .submit(prepared.pairs, cancel)
            .map_err(|r| self.refusal(r))?;
        let clock = ticket.clock();
        let predictions = match ticket.wait(opts.deadline) {
            Ok(Ok(p)) => p,
            Ok(Err(Failure::Engine(e))) => {
                return Err(RankError::Internal(format!("engine error: {e}")))
            }
            Ok(Err(Failure::Panic(e))) => {
                return Err(RankError::Internal(format!(
                    "the engine failed on the batch holding this request (panic: {e}); \
                     the server is still running"
                )))
            }
            Err(Unanswered::Stopped) => {
                return Err(RankError::Unavailable("the engine worker stopped".into()))
            }
            Err(Unanswered::TimedOut) => {
                return Err(RankError::Unavailable(
                    "the request was not answered before its deadline".into(),
                ))
            }
            Err(Unanswered::Cancelled) => {
                return Err(RankError::Unavailable("the request was cancelled".into()))
            }
        };
        let waited = t1.elapsed().as_secs_f64() * 1e3;
        let queue_ms = clock
            .queued_for()
            .map_or(waited, |d| d.as_secs_f64() * 1e3)
            .min(waited);
        self.metrics
            .pairs(&self.name, documents.len(), &lengths, window);
        Ok(Scored {
            ranked: prepared.owners.fold(&predictions)?,
            tokens,
            cascade: None,
            timings: Some(Timings {
                tokenize_ms,
                queue_ms,
                inference_ms: waited - queue_ms,
            }),
        })
    }
}

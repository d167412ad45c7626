//! What every dialect shares: validate, split long documents into chunks, tokenise, queue,
//! and fold chunk scores back into one score per document.

use crate::batcher::{Failure, Refused};
use crate::errors::ApiError;
use crate::state::{AppState, Backend, ModelHandle};
use crossrank_rank::hosted::HostedReranker;
use crossrank_rank::long_docs::prepare;
pub use crossrank_rank::long_docs::LongDocs;
use crossrank_rank::{RankError, Ranked, Reranker, ScoreOptions};
use std::sync::Arc;
use std::time::Duration;

/// A rerank request in dialect-neutral form.
pub struct RerankJob {
    /// Requested model name (None = default).
    pub model: Option<String>,
    /// The query.
    pub query: String,
    /// Document texts.
    pub documents: Vec<String>,
    /// Long-document policy.
    pub long_docs: LongDocs,
    /// Instruction for models whose prompt template takes one (ignored by the others).
    pub instruction: Option<String>,
}

/// Scores in input order plus accounting.
pub struct RerankOutcome {
    /// Name of the model used.
    pub model: String,
    /// One per document, input order (sort with [`crossrank_rank::sort_ranked`]).
    pub scores: Vec<Ranked>,
    /// Tokens scored (all chunks, special tokens included).
    pub tokens: usize,
}

/// Validates, queues and scores a request.
pub async fn rerank(state: &Arc<AppState>, job: RerankJob) -> Result<RerankOutcome, ApiError> {
    if job.documents.is_empty() {
        return Err(ApiError::bad_request("documents must not be empty"));
    }
    if job.documents.len() > state.config.max_documents {
        return Err(ApiError::too_large(format!(
            "{} documents in one request; the limit (max_documents) is {}",
            job.documents.len(),
            state.config.max_documents
        )));
    }
    let handle: &ModelHandle = state.model(job.model.as_deref())?;
    let local = match &handle.backend {
        Backend::Local(l) => l,
        Backend::Hosted(h) => return hosted(state, handle, h.clone(), job).await,
    };
    if let LongDocs::Chunk { max_chunks, .. } = job.long_docs {
        let limit = state.config.max_chunks_per_doc;
        if max_chunks > limit {
            return Err(ApiError::unprocessable(format!(
                "max_chunks_per_doc is {max_chunks}; the limit (max_chunks_per_doc) is {limit}"
            )));
        }
    }
    let refusal = |refused: Refused| -> ApiError {
        let reason = match refused {
            Refused::QueueFull { .. } => "queue_full",
            Refused::TooSlow { .. } => "deadline",
        };
        state.metrics.refused(&handle.name, reason);
        match refused {
            Refused::QueueFull { depth, retry_after } => ApiError::overloaded(
                format!(
                    "the queue of model {} is full ({depth} requests waiting); retry later",
                    handle.name
                ),
                retry_after,
            ),
            Refused::TooSlow {
                predicted_ms,
                max_queue_ms,
                retry_after,
            } => ApiError::overloaded(
                format!(
                    "model {} would answer in about {predicted_ms} ms, over max_queue_ms \
                     ({max_queue_ms}); retry in {retry_after} s or elsewhere",
                    handle.name
                ),
                retry_after,
            ),
        }
    };
    // Refuse before tokenising when the backlog alone is already past the deadline.
    local.batcher.precheck().map_err(&refusal)?;
    let model = local.model.clone();
    let prepared = tokio::task::spawn_blocking(move || {
        prepare(
            &model,
            &job.query,
            &job.documents,
            job.instruction.as_deref(),
            job.long_docs,
        )
    })
    .await
    .map_err(|e| ApiError::internal(format!("tokenisation task failed: {e}")))?
    .map_err(request_error)?;
    let tokens = prepared.tokens();
    let max_tokens = state.config.max_request_tokens;
    if tokens > max_tokens {
        return Err(ApiError::too_large(format!(
            "the request puts {tokens} tokens through the engine ({} pairs after chunking); \
             the limit (max_request_tokens) is {max_tokens}",
            prepared.pairs.len()
        )));
    }
    let ticket = local.batcher.submit(prepared.pairs).map_err(&refusal)?;
    let timeout = Duration::from_millis(state.config.request_timeout_ms);
    let preds = match tokio::time::timeout(timeout, ticket.wait()).await {
        Ok(Some(Ok(p))) => p,
        Ok(Some(Err(Failure::Engine(e)))) => {
            return Err(ApiError::internal(format!("engine error: {e}")))
        }
        Ok(Some(Err(Failure::Panic(e)))) => {
            return Err(ApiError::internal(format!(
                "the engine failed on the batch holding this request (panic: {e}); \
                 the server is still running"
            )))
        }
        Ok(None) => return Err(ApiError::unavailable("the engine worker stopped")),
        Err(_) => {
            return Err(ApiError::unavailable(format!(
                "the request was not answered within {} ms",
                state.config.request_timeout_ms
            )))
        }
    };
    let scores = prepared
        .owners
        .fold(&preds)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(RerankOutcome {
        model: handle.name.clone(),
        scores,
        tokens,
    })
}

/// A request error of the long-document policy or the tokenizer, as the status it deserves.
fn request_error(e: RankError) -> ApiError {
    match e {
        RankError::TooLong { .. } => ApiError::bad_request(e.to_string()),
        RankError::Unsupported(m) => ApiError::unprocessable(m),
        RankError::Engine(e) => ApiError::unprocessable(format!("tokenisation failed: {e}")),
        RankError::Internal(m) => ApiError::internal(m),
        RankError::Provider { .. } => {
            ApiError::unavailable(format!("upstream reranker failed: {e}"))
        }
    }
}

/// A hosted model: the provider handles long documents (a refusal policy is passed on or
/// refused, see `HostedReranker`); its failures become 503.
async fn hosted(
    state: &Arc<AppState>,
    handle: &ModelHandle,
    reranker: Arc<HostedReranker>,
    job: RerankJob,
) -> Result<RerankOutcome, ApiError> {
    let timeout = Duration::from_millis(state.config.request_timeout_ms);
    let tokens = job
        .documents
        .iter()
        .map(|d| (d.len() + job.query.len()) / 4 + 1)
        .sum();
    let task = tokio::task::spawn_blocking(move || {
        let docs: Vec<&str> = job.documents.iter().map(String::as_str).collect();
        let opts = ScoreOptions {
            long_docs: Some(job.long_docs),
            instruction: job.instruction.clone(),
        };
        reranker.score_with(&job.query, &docs, &opts)
    });
    let scores = match tokio::time::timeout(timeout, task).await {
        Ok(Ok(Ok(r))) => r,
        Ok(Ok(Err(e))) => return Err(request_error(e)),
        Ok(Err(e)) => return Err(ApiError::internal(format!("upstream task failed: {e}"))),
        Err(_) => {
            return Err(ApiError::unavailable(format!(
                "the request was not answered within {} ms",
                state.config.request_timeout_ms
            )))
        }
    };
    Ok(RerankOutcome {
        model: handle.name.clone(),
        scores,
        tokens,
    })
}

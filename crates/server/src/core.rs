//! What every dialect shares: validate, split long documents into chunks, tokenise, queue,
//! and fold chunk scores back into one score per document.

use crate::batcher::{Failure, Refused};
use crate::errors::ApiError;
use crate::state::{AppState, Backend, ModelHandle};
use crossrank_engine::{CrossEncoder, Direction, Encoded, Template};
use crossrank_rank::hosted::HostedReranker;
use crossrank_rank::long_docs::chunk_spans;
use crossrank_rank::Reranker;
use std::sync::Arc;
use std::time::Duration;

/// How documents longer than the model's window are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LongDocs {
    /// Truncate each pair to the window (TEI, `truncate: true`).
    Truncate(Direction),
    /// Refuse a pair that does not fit (TEI `truncate: false`, Voyage `truncation: false`).
    Reject,
    /// Cohere's way: cut each document to `max_tokens` tokens, split it into window-sized
    /// chunks (at most `max_chunks`), score each chunk, keep the best.
    Chunk {
        /// Tokens kept of a document.
        max_tokens: usize,
        /// Chunks scored per document.
        max_chunks: usize,
    },
}

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

/// Score of one document.
#[derive(Debug, Clone, Copy)]
pub struct DocScore {
    /// Input position.
    pub index: usize,
    /// Probability (sigmoid / softmax[1]).
    pub score: f32,
    /// Raw logit (for 2 labels: logit[1] - logit[0]).
    pub logit: f32,
}

/// Sorts by score, best first; ties keep input order (every dialect answers in this order).
pub fn best_first(scores: &mut [DocScore]) {
    scores.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.index.cmp(&b.index)));
}

/// Scores in input order plus accounting.
pub struct RerankOutcome {
    /// Name of the model used.
    pub model: String,
    /// One per document, input order.
    pub scores: Vec<DocScore>,
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
    let n_docs = job.documents.len();
    let (pairs, owners) = tokio::task::spawn_blocking(move || tokenize(&model, &job))
        .await
        .map_err(|e| ApiError::internal(format!("tokenisation task failed: {e}")))??;
    let tokens: usize = pairs.iter().map(|p| p.ids.len()).sum();
    let max_tokens = state.config.max_request_tokens;
    if tokens > max_tokens {
        return Err(ApiError::too_large(format!(
            "the request puts {tokens} tokens through the engine ({} pairs after chunking); \
             the limit (max_request_tokens) is {max_tokens}",
            pairs.len()
        )));
    }
    let ticket = local.batcher.submit(pairs).map_err(&refusal)?;
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
    let mut scores: Vec<Option<DocScore>> = vec![None; n_docs];
    for (p, &doc) in preds.iter().zip(&owners) {
        let logit = match p.logits.as_slice() {
            [a, b] => b - a,
            l => l.first().copied().unwrap_or(f32::NAN),
        };
        let s = DocScore {
            index: doc,
            score: p.score,
            logit,
        };
        match &scores[doc] {
            Some(best) if best.score >= s.score => {}
            _ => scores[doc] = Some(s),
        }
    }
    let scores = scores
        .into_iter()
        .enumerate()
        .map(|(i, s)| s.ok_or_else(|| ApiError::internal(format!("document {i} was not scored"))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RerankOutcome {
        model: handle.name.clone(),
        scores,
        tokens,
    })
}

/// Tokenises the request's pairs; returns them with the document each belongs to.
fn tokenize(model: &CrossEncoder, job: &RerankJob) -> Result<(Vec<Encoded>, Vec<usize>), ApiError> {
    let tok = model.tokenizer();
    let max_len = model.max_length();
    let engine_err = |e: crossrank_engine::EngineError| {
        ApiError::unprocessable(format!("tokenisation failed: {e}"))
    };
    let query = job.query.as_str();
    let instruction = job.instruction.as_deref();
    match job.long_docs {
        LongDocs::Truncate(direction) => {
            let pairs: Vec<(&str, &str)> =
                job.documents.iter().map(|d| (query, d.as_str())).collect();
            // A prompt template truncates its own way (the document's end), whatever the
            // requested direction.
            let enc = if model.template() == Template::None {
                model.tokenizer().encode_pairs_from(&pairs, direction)
            } else {
                model.tokenize_with(&pairs, instruction)
            }
            .map_err(engine_err)?;
            Ok((enc, (0..job.documents.len()).collect()))
        }
        LongDocs::Reject => {
            for (i, d) in job.documents.iter().enumerate() {
                let n = model
                    .untruncated_len(query, d, instruction)
                    .map_err(engine_err)?;
                if n > max_len {
                    return Err(ApiError::bad_request(format!(
                        "document {i} is {n} tokens together with the query; the model takes {max_len} and truncation is disabled"
                    )));
                }
            }
            let pairs: Vec<(&str, &str)> =
                job.documents.iter().map(|d| (query, d.as_str())).collect();
            Ok((
                model
                    .tokenize_with(&pairs, instruction)
                    .map_err(engine_err)?,
                (0..job.documents.len()).collect(),
            ))
        }
        LongDocs::Chunk {
            max_tokens,
            max_chunks,
        } => {
            // What a pair costs besides the document: special tokens and the query, or a
            // prompt template's whole frame (instruction and query included).
            let overhead = if model.template() == Template::None {
                tok.token_offsets(query).map_err(engine_err)?.len() + tok.pair_special_tokens()
            } else {
                model
                    .untruncated_len(query, "", instruction)
                    .map_err(engine_err)?
            };
            // Room for the document; a very long query leaves half the window.
            let window = max_len.saturating_sub(overhead).max(max_len / 2).max(1);
            let mut texts: Vec<&str> = Vec::new();
            let mut owners = Vec::new();
            for (i, d) in job.documents.iter().enumerate() {
                let offsets = tok.token_offsets(d).map_err(engine_err)?;
                for span in chunk_spans(d, &offsets, window, max_tokens, max_chunks) {
                    texts.push(d.get(span).unwrap_or(d));
                    owners.push(i);
                }
            }
            let pairs: Vec<(&str, &str)> = texts.iter().map(|t| (query, *t)).collect();
            Ok((
                model
                    .tokenize_with(&pairs, instruction)
                    .map_err(engine_err)?,
                owners,
            ))
        }
    }
}

/// A hosted model: the provider handles long documents; its errors become 503.
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
        reranker.score(&job.query, &docs)
    });
    let ranked = match tokio::time::timeout(timeout, task).await {
        Ok(Ok(Ok(r))) => r,
        Ok(Ok(Err(e))) => {
            return Err(ApiError::unavailable(format!(
                "upstream reranker failed: {e}"
            )))
        }
        Ok(Err(e)) => return Err(ApiError::internal(format!("upstream task failed: {e}"))),
        Err(_) => {
            return Err(ApiError::unavailable(format!(
                "the request was not answered within {} ms",
                state.config.request_timeout_ms
            )))
        }
    };
    let scores = ranked
        .into_iter()
        .map(|r| DocScore {
            index: r.index,
            score: r.score,
            logit: r.logit,
        })
        .collect();
    Ok(RerankOutcome {
        model: handle.name.clone(),
        scores,
        tokens,
    })
}

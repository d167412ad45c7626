//! `POST /v1/rerank`, the path Cohere v1, Jina and Voyage all use. One response body satisfies
//! all three clients: Cohere reads `results` and `meta`, Jina `results` and `usage`, Voyage
//! `data` and `usage`.
//!
//! [`V1Request`] -> [`V1Response`].

use super::wire::{
    count, parse, ApiVersion, BilledUnits, CascadeInfo, Count, ErrorBody, ResultExtras,
};
use super::{json_body, request_id, search_units};
use crate::core::{rerank as score, LongDocs, RerankJob};
use crate::errors::{ApiError, Dialect};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use crossrank_rank::sort_ranked;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;
use utoipa::ToSchema;

/// A Cohere v1 / Jina / Voyage rerank request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct V1Request {
    /// The query.
    pub query: String,
    /// Strings, or objects ranked by their `text` field (or by `rank_fields`).
    #[schema(value_type = Vec<Object>)]
    pub documents: Vec<Value>,
    /// The served model (default: the first).
    pub model: Option<String>,
    /// Results returned (Cohere, Jina); default all.
    pub top_n: Option<Count>,
    /// Results returned (Voyage), when `top_n` is absent.
    pub top_k: Option<Count>,
    /// Echo each document in its result (default true).
    pub return_documents: Option<bool>,
    /// Fields of object documents to rank by, as `key: value` lines (Cohere).
    pub rank_fields: Option<Vec<String>>,
    /// Chunks a long document may be split into (default 10, at most the server's
    /// `max_chunks_per_doc`).
    pub max_chunks_per_doc: Option<Count>,
    /// Tokens of a document read at most (default 4096).
    pub max_tokens_per_doc: Option<Count>,
    /// `false` refuses documents longer than the model's window (Voyage) instead of chunking.
    pub truncation: Option<bool>,
    /// Instruction for models whose prompt template takes one (crossrank extension).
    pub instruction: Option<String>,
    /// A cascade's latency budget: the best ranking finished in this many milliseconds
    /// (crossrank extension; other models ignore it).
    pub deadline_ms: Option<Count>,
}

/// One ranked document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct V1Result {
    /// Position of the document in the request.
    pub index: usize,
    /// Relevance probability in [0, 1].
    pub relevance_score: f32,
    /// The document (`{"text": ...}` for strings), unless `return_documents` is false.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub document: Option<Value>,
    /// Cascade stage and scores, the uncalibrated score (when they apply).
    #[serde(flatten)]
    pub extras: ResultExtras,
}

/// Tokens scored, as Jina and Voyage report them.
#[derive(Debug, Serialize, ToSchema)]
pub struct Usage {
    /// Tokens scored (every chunk, special tokens included).
    pub total_tokens: usize,
    /// The same number.
    pub prompt_tokens: usize,
}

/// Cohere v1's `meta`.
#[derive(Debug, Serialize, ToSchema)]
pub struct V1Meta {
    /// Always "1".
    pub api_version: ApiVersion,
    /// Search units of this request.
    pub billed_units: BilledUnits,
}

/// The response, read by Cohere (`results`, `meta`), Jina (`results`, `usage`) and Voyage
/// (`data`, `usage`) clients.
#[derive(Debug, Serialize, ToSchema)]
pub struct V1Response {
    /// Request id.
    pub id: String,
    /// Always "list" (Voyage).
    pub object: &'static str,
    /// The model used.
    pub model: String,
    /// Documents by relevance, best first, cut to `top_n`.
    pub results: Vec<V1Result>,
    /// The same list (Voyage).
    pub data: Vec<V1Result>,
    /// Tokens scored.
    pub usage: Usage,
    /// Cohere's metadata.
    pub meta: V1Meta,
    /// How a cascade answered (cascade models only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cascade: Option<CascadeInfo>,
    /// `true` when the scores are calibrated (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibrated: Option<bool>,
}

/// Cohere v1's default number of chunks per document.
pub const DEFAULT_MAX_CHUNKS: usize = 10;
/// Cohere's default cap on a document's tokens.
pub const DEFAULT_MAX_TOKENS: usize = 4096;

/// Ranks `documents` by relevance to `query`.
#[utoipa::path(post, path = "/v1/rerank", operation_id = "v1_rerank", tag = "Cohere v1, Jina, Voyage",
    request_body = V1Request,
    responses((status = 200, description = "Documents by relevance, best first", body = V1Response),
        (status = "4XX", description = "The request's fault", body = ErrorBody),
        (status = "5XX", description = "Busy, unavailable (503, Retry-After when known) or failed",
            body = ErrorBody)))]
pub async fn rerank(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match handle(&state, body).await {
        Ok((v, headers)) => (headers, Json(v)).into_response(),
        Err(e) => e.render(Dialect::V1),
    }
}

/// Text to rank for each document: strings as they are; objects by `rank_fields` (Cohere:
/// `key: value` lines) or their `text` field.
pub fn document_texts(
    docs: &[Value],
    rank_fields: Option<&[String]>,
) -> Result<Vec<String>, ApiError> {
    docs.iter()
        .enumerate()
        .map(|(i, d)| match d {
            Value::String(s) => Ok(s.clone()),
            Value::Object(o) => match rank_fields {
                Some(fields) => {
                    let mut lines = Vec::new();
                    for f in fields {
                        match o.get(f) {
                            Some(Value::String(s)) => lines.push(format!("{f}: {s}")),
                            Some(Value::Null) | None => {}
                            Some(v) => lines.push(format!("{f}: {v}")),
                        }
                    }
                    if lines.is_empty() {
                        Err(ApiError::unprocessable(format!(
                            "documents[{i}] has none of the rank_fields {fields:?}"
                        )))
                    } else {
                        Ok(lines.join("\n"))
                    }
                }
                None => match o.get("text") {
                    Some(Value::String(s)) => Ok(s.clone()),
                    Some(_) => Err(ApiError::unprocessable(format!(
                        "documents[{i}].text must be a string"
                    ))),
                    None => Err(ApiError::unprocessable(format!(
                        "documents[{i}] has no \"text\" field"
                    ))),
                },
            },
            _ => Err(ApiError::unprocessable(format!(
                "documents[{i}] must be a string or an object with \"text\""
            ))),
        })
        .collect()
}

async fn handle(
    state: &Arc<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(V1Response, HeaderMap), ApiError> {
    let req: V1Request = parse(json_body(body, state.config.max_body_bytes)?)?;
    let texts = document_texts(&req.documents, req.rank_fields.as_deref())?;
    let top_n = count(req.top_n.or(req.top_k));
    let return_documents = req.return_documents.unwrap_or(true);
    let long_docs = if req.truncation == Some(false) {
        LongDocs::Reject
    } else {
        LongDocs::Chunk {
            max_tokens: count(req.max_tokens_per_doc).unwrap_or(DEFAULT_MAX_TOKENS),
            max_chunks: count(req.max_chunks_per_doc)
                .unwrap_or(DEFAULT_MAX_CHUNKS.min(state.config.max_chunks_per_doc)),
        }
    };
    let n = texts.len();
    let job = RerankJob {
        model: req.model,
        query: req.query,
        documents: texts,
        long_docs,
        instruction: req.instruction,
        deadline_ms: count(req.deadline_ms),
    };
    let mut outcome = score(state, job).await?;
    let headers = outcome.headers();
    let mut scores = std::mem::take(&mut outcome.scores);
    sort_ranked(&mut scores);
    scores.truncate(top_n.unwrap_or(n));
    let docs = req.documents;
    let results: Vec<V1Result> = scores
        .iter()
        .map(|s| V1Result {
            index: s.index,
            relevance_score: s.score,
            document: return_documents.then(|| match &docs[s.index] {
                Value::String(t) => json!({"text": t}),
                other => other.clone(),
            }),
            extras: ResultExtras::of(&outcome, s),
        })
        .collect();
    let body = V1Response {
        id: request_id(),
        object: "list",
        model: outcome.model,
        data: results.clone(),
        results,
        usage: Usage {
            total_tokens: outcome.tokens,
            prompt_tokens: outcome.tokens,
        },
        meta: V1Meta {
            api_version: ApiVersion { version: "1" },
            billed_units: BilledUnits {
                search_units: search_units(n),
            },
        },
        cascade: outcome.cascade.as_ref().map(CascadeInfo::new),
        calibrated: outcome.calibrated.then_some(true),
    };
    Ok((body, headers))
}

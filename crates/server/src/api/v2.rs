//! Cohere v2: `POST /v2/rerank`, [`V2Request`] -> [`V2Response`].

use super::v1::{document_texts, DEFAULT_MAX_CHUNKS, DEFAULT_MAX_TOKENS};
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
use serde_json::Value;
use std::sync::Arc;
use utoipa::ToSchema;

/// A Cohere v2 rerank request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct V2Request {
    /// The served model (default: the first).
    pub model: Option<String>,
    /// The query.
    pub query: String,
    /// Strings (or objects with `text`).
    #[schema(value_type = Vec<Object>)]
    pub documents: Vec<Value>,
    /// Results returned; default all.
    pub top_n: Option<Count>,
    /// Tokens of a document read at most (default 4096); longer documents are chunked.
    pub max_tokens_per_doc: Option<Count>,
    /// Instruction for models whose prompt template takes one (crossrank extension).
    pub instruction: Option<String>,
    /// A cascade's latency budget in milliseconds (crossrank extension).
    pub deadline_ms: Option<Count>,
}

/// One ranked document.
#[derive(Debug, Serialize, ToSchema)]
pub struct V2Result {
    /// Position of the document in the request.
    pub index: usize,
    /// Relevance probability in [0, 1].
    pub relevance_score: f32,
    /// Cascade stage and scores, the uncalibrated score (when they apply).
    #[serde(flatten)]
    pub extras: ResultExtras,
}

/// Tokens of the request.
#[derive(Debug, Serialize, ToSchema)]
pub struct Tokens {
    /// Tokens scored.
    pub input_tokens: usize,
    /// Always 0.
    pub output_tokens: usize,
}

/// Cohere v2's `meta`.
#[derive(Debug, Serialize, ToSchema)]
pub struct V2Meta {
    /// Always "2".
    pub api_version: ApiVersion,
    /// Search units of this request.
    pub billed_units: BilledUnits,
    /// Tokens scored.
    pub tokens: Tokens,
}

/// The response.
#[derive(Debug, Serialize, ToSchema)]
pub struct V2Response {
    /// Request id.
    pub id: String,
    /// Documents by relevance, best first, cut to `top_n`.
    pub results: Vec<V2Result>,
    /// Cohere's metadata.
    pub meta: V2Meta,
    /// How a cascade answered (cascade models only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cascade: Option<CascadeInfo>,
    /// `true` when the scores are calibrated (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibrated: Option<bool>,
}

/// Ranks `documents` by relevance to `query`.
#[utoipa::path(post, path = "/v2/rerank", operation_id = "v2_rerank", tag = "Cohere v2",
    request_body = V2Request,
    responses((status = 200, description = "Documents by relevance, best first", body = V2Response),
        (status = "4XX", description = "The request's fault", body = ErrorBody),
        (status = "5XX", description = "Busy, unavailable (503, Retry-After when known) or failed",
            body = ErrorBody)))]
pub async fn rerank(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match handle(&state, body).await {
        Ok((v, headers)) => (headers, Json(v)).into_response(),
        Err(e) => e.render(Dialect::V2),
    }
}

async fn handle(
    state: &Arc<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(V2Response, HeaderMap), ApiError> {
    let req: V2Request = parse(json_body(body, state.config.max_body_bytes)?)?;
    let texts = document_texts(&req.documents, None)?;
    let long_docs = LongDocs::Chunk {
        max_tokens: count(req.max_tokens_per_doc).unwrap_or(DEFAULT_MAX_TOKENS),
        max_chunks: DEFAULT_MAX_CHUNKS.min(state.config.max_chunks_per_doc),
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
    scores.truncate(count(req.top_n).unwrap_or(n));
    let body = V2Response {
        id: request_id(),
        results: scores
            .iter()
            .map(|s| V2Result {
                index: s.index,
                relevance_score: s.score,
                extras: ResultExtras::of(&outcome, s),
            })
            .collect(),
        meta: V2Meta {
            api_version: ApiVersion { version: "2" },
            billed_units: BilledUnits {
                search_units: search_units(n),
            },
            tokens: Tokens {
                input_tokens: outcome.tokens,
                output_tokens: 0,
            },
        },
        cascade: outcome.cascade.as_ref().map(CascadeInfo::new),
        calibrated: outcome.calibrated.then_some(true),
    };
    Ok((body, headers))
}

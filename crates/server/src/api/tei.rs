//! Hugging Face Text Embeddings Inference: `POST /rerank`.
//!
//! [`TeiRequest`] -> `[`[`TeiRank`]`]` sorted by score, best first.

use super::json_body;
use super::wire::{count, parse, Count, ErrorBody, ResultExtras};
use crate::core::{rerank as score, LongDocs, RerankJob};
use crate::errors::{ApiError, Dialect};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use crossrank_engine::Direction;
use crossrank_rank::sort_ranked;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

/// A TEI rerank request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TeiRequest {
    /// The query.
    pub query: String,
    /// The passages to score against the query.
    pub texts: Vec<String>,
    /// Return the raw logit instead of the probability.
    pub raw_scores: Option<bool>,
    /// Echo each text in its result.
    pub return_text: Option<bool>,
    /// Truncate inputs longer than the model's window (default: the server's `auto_truncate`);
    /// `false` refuses them with 400.
    pub truncate: Option<bool>,
    /// Which end to cut when truncating.
    pub truncation_direction: Option<TruncationDirection>,
    /// The served model (crossrank extension; default: the first).
    pub model: Option<String>,
    /// Instruction for models whose prompt template takes one (crossrank extension).
    pub instruction: Option<String>,
    /// A cascade's latency budget in milliseconds (crossrank extension).
    pub deadline_ms: Option<Count>,
}

/// TEI's truncation direction; lower case is accepted too.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
pub enum TruncationDirection {
    /// Keep the start.
    #[serde(alias = "right")]
    Right,
    /// Keep the end.
    #[serde(alias = "left")]
    Left,
}

/// One scored text.
#[derive(Debug, Serialize, ToSchema)]
pub struct TeiRank {
    /// Position of the text in the request.
    pub index: usize,
    /// Relevance probability, or the logit with `raw_scores`.
    pub score: f32,
    /// The text, with `return_text`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Cascade stage and scores, the uncalibrated score (when they apply).
    #[serde(flatten)]
    pub extras: ResultExtras,
}

/// Scores `texts` against `query`.
#[utoipa::path(post, path = "/rerank", operation_id = "tei_rerank", tag = "TEI",
    request_body = TeiRequest,
    responses((status = 200, description = "Texts by score, best first", body = Vec<TeiRank>),
        (status = "4XX", description = "The request's fault", body = ErrorBody),
        (status = "5XX", description = "Busy, unavailable (503, Retry-After when known) or failed",
            body = ErrorBody)))]
pub async fn rerank(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match handle(&state, body).await {
        Ok((v, headers)) => (headers, Json(v)).into_response(),
        Err(e) => e.render(Dialect::Tei),
    }
}

async fn handle(
    state: &Arc<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Vec<TeiRank>, HeaderMap), ApiError> {
    let req: TeiRequest = parse(json_body(body, state.config.max_body_bytes)?)?;
    let raw = req.raw_scores.unwrap_or(false);
    let return_text = req.return_text.unwrap_or(false);
    let long_docs = if req.truncate.unwrap_or(state.config.auto_truncate) {
        LongDocs::Truncate(match req.truncation_direction {
            None | Some(TruncationDirection::Right) => Direction::Right,
            Some(TruncationDirection::Left) => Direction::Left,
        })
    } else {
        LongDocs::Reject
    };
    let texts = if return_text {
        req.texts.clone()
    } else {
        Vec::new()
    };
    let job = RerankJob {
        model: req.model,
        query: req.query,
        documents: req.texts,
        long_docs,
        instruction: req.instruction,
        deadline_ms: count(req.deadline_ms),
    };
    let mut outcome = score(state, job).await?;
    let headers = outcome.headers();
    let mut out = std::mem::take(&mut outcome.scores);
    sort_ranked(&mut out);
    let ranks = out
        .iter()
        .map(|s| TeiRank {
            index: s.index,
            score: if raw { s.logit } else { s.score },
            text: texts.get(s.index).cloned(),
            extras: ResultExtras::of(&outcome, s),
        })
        .collect();
    Ok((ranks, headers))
}

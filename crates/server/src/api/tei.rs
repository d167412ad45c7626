//! Hugging Face Text Embeddings Inference: `POST /rerank`.
//!
//! `{query, texts, raw_scores?, return_text?, truncate?, truncation_direction?}` ->
//! `[{index, score, text?}]` sorted by score, best first.

use super::{json_body, Fields};
use crate::core::{rerank as score, LongDocs, RerankJob};
use crate::errors::{ApiError, Dialect};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use crossrank_engine::Direction;
use crossrank_rank::sort_ranked;
use serde_json::{json, Value};
use std::sync::Arc;

/// The handler.
pub async fn rerank(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match handle(&state, body).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.render(Dialect::Tei),
    }
}

async fn handle(
    state: &Arc<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Value, ApiError> {
    let obj = json_body(body, state.config.max_body_bytes)?;
    let f = Fields(&obj);
    let query = f.string("query")?;
    let texts = f
        .array("texts")?
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_str()
                .map(String::from)
                .ok_or_else(|| ApiError::unprocessable(format!("texts[{i}] must be a string")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let raw = f.opt_bool("raw_scores")?.unwrap_or(false);
    let return_text = f.opt_bool("return_text")?.unwrap_or(false);
    let truncate = f
        .opt_bool("truncate")?
        .unwrap_or(state.config.auto_truncate);
    let direction = match f.opt_string("truncation_direction")?.as_deref() {
        None | Some("Right") | Some("right") => Direction::Right,
        Some("Left") | Some("left") => Direction::Left,
        Some(other) => {
            return Err(ApiError::unprocessable(format!(
                "truncation_direction must be \"Right\" or \"Left\", not {other:?}"
            )))
        }
    };
    let long_docs = if truncate {
        LongDocs::Truncate(direction)
    } else {
        LongDocs::Reject
    };
    let job = RerankJob {
        model: f.opt_string("model")?,
        query,
        documents: texts,
        long_docs,
        instruction: f.opt_string("instruction")?,
    };
    let texts = job.documents.clone();
    let mut out = score(state, job).await?.scores;
    sort_ranked(&mut out);
    Ok(Value::Array(
        out.iter()
            .map(|s| {
                let mut item =
                    json!({"index": s.index, "score": if raw { s.logit } else { s.score }});
                if return_text {
                    item["text"] = json!(texts[s.index]);
                }
                item
            })
            .collect(),
    ))
}

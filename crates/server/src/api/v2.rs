//! Cohere v2: `POST /v2/rerank`, `{model, query, documents, top_n?, max_tokens_per_doc?}` ->
//! `{id, results: [{index, relevance_score}], meta}`.

use super::v1::{document_texts, DEFAULT_MAX_CHUNKS, DEFAULT_MAX_TOKENS};
use super::{json_body, request_id, search_units, Fields};
use crate::core::{rerank as score, LongDocs, RerankJob};
use crate::errors::{ApiError, Dialect};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
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
        Err(e) => e.render(Dialect::V2),
    }
}

async fn handle(
    state: &Arc<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Value, ApiError> {
    let obj = json_body(body, state.config.max_body_bytes)?;
    let f = Fields(&obj);
    let query = f.string("query")?;
    let texts = document_texts(f.array("documents")?, None)?;
    let top_n = f.opt_count("top_n")?;
    let long_docs = LongDocs::Chunk {
        max_tokens: f
            .opt_count("max_tokens_per_doc")?
            .unwrap_or(DEFAULT_MAX_TOKENS),
        max_chunks: DEFAULT_MAX_CHUNKS.min(state.config.max_chunks_per_doc),
    };
    let n = texts.len();
    let job = RerankJob {
        model: f.opt_string("model")?,
        query,
        documents: texts,
        long_docs,
        instruction: f.opt_string("instruction")?,
    };
    let outcome = score(state, job).await?;
    let mut scores = outcome.scores;
    sort_ranked(&mut scores);
    scores.truncate(top_n.unwrap_or(n));
    let results: Vec<Value> = scores
        .iter()
        .map(|s| json!({"index": s.index, "relevance_score": s.score}))
        .collect();
    Ok(json!({
        "id": request_id(),
        "results": results,
        "meta": {
            "api_version": {"version": "2"},
            "billed_units": {"search_units": search_units(n)},
            "tokens": {"input_tokens": outcome.tokens, "output_tokens": 0},
        },
    }))
}

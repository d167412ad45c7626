//! `POST /v1/rerank`, the path Cohere v1, Jina and Voyage all use. One response body satisfies
//! all three clients: Cohere reads `results` and `meta`, Jina `results` and `usage`, Voyage
//! `data` and `usage`.
//!
//! Request: `{query, documents: [string | {text, ...}], model?, top_n? | top_k?,
//! return_documents?, rank_fields?, max_chunks_per_doc?, max_tokens_per_doc?, truncation?}`.

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

/// Cohere v1's default number of chunks per document.
pub const DEFAULT_MAX_CHUNKS: usize = 10;
/// Cohere's default cap on a document's tokens.
pub const DEFAULT_MAX_TOKENS: usize = 4096;

/// The handler.
pub async fn rerank(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match handle(&state, body).await {
        Ok(v) => Json(v).into_response(),
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
) -> Result<Value, ApiError> {
    let obj = json_body(body, state.config.max_body_bytes)?;
    let f = Fields(&obj);
    let query = f.string("query")?;
    let docs = f.array("documents")?;
    let rank_fields = f.opt_strings("rank_fields")?;
    let texts = document_texts(docs, rank_fields.as_deref())?;
    let top_n = match f.opt_count("top_n")? {
        Some(n) => Some(n),
        None => f.opt_count("top_k")?,
    };
    let return_documents = f.opt_bool("return_documents")?.unwrap_or(true);
    let long_docs = if f.opt_bool("truncation")? == Some(false) {
        LongDocs::Reject
    } else {
        LongDocs::Chunk {
            max_tokens: f
                .opt_count("max_tokens_per_doc")?
                .unwrap_or(DEFAULT_MAX_TOKENS),
            max_chunks: f
                .opt_count("max_chunks_per_doc")?
                .unwrap_or(DEFAULT_MAX_CHUNKS.min(state.config.max_chunks_per_doc)),
        }
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
        .map(|s| {
            let mut item = json!({"index": s.index, "relevance_score": s.score});
            if return_documents {
                item["document"] = match &docs[s.index] {
                    Value::String(t) => json!({"text": t}),
                    other => other.clone(),
                };
            }
            item
        })
        .collect();
    Ok(json!({
        "id": request_id(),
        "object": "list",
        "model": outcome.model,
        "results": results,
        "data": results,
        "usage": {"total_tokens": outcome.tokens, "prompt_tokens": outcome.tokens},
        "meta": {"api_version": {"version": "1"}, "billed_units": {"search_units": search_units(n)}},
    }))
}

//! Search collections over HTTP: `POST /v1/collections/{name}/documents`,
//! `DELETE /v1/collections/{name}/documents/{id}`, `POST /v1/collections/{name}/search`.
//! Errors are `{"error": ...}`.

use super::json_body;
use crate::core::{rerank, LongDocs, RerankJob};
use crate::errors::{ApiError, Dialect};
use crate::registry::{retrieve_error, with_store};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use crossrank_engine::Direction;
use crossrank_retrieve::collection::DocInput;
use crossrank_retrieve::pipeline::{now_unix, RerankFailed, SearchRequest};
use serde_json::{json, Value};
use std::sync::Arc;

/// Smallest `chunk_tokens` an upload may ask for.
const MIN_CHUNK_TOKENS: u64 = 8;
/// Largest `chunk_tokens` (no bi-encoder reads more in one pass).
const MAX_CHUNK_TOKENS: u64 = 8192;

fn path<T>(p: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    p.map(|Path(v)| v)
        .map_err(|e| ApiError::bad_request(format!("invalid path: {e}")))
}

fn respond(r: Result<Value, ApiError>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.render(Dialect::Plain),
    }
}

/// Adds or replaces documents: `{"documents": [{id, text, title?, source?, updated_at?, doc_id?,
/// metadata?}], "chunk_tokens"?, "overlap"?}` (chunking as `crossrank index` does it).
pub async fn upsert(
    State(state): State<Arc<AppState>>,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    respond(
        async {
            let name = path(name)?;
            let obj = json_body(body, state.config.max_body_bytes)?;
            let max_docs = state.config.max_upload_documents;
            if let Some(Value::Array(a)) = obj.get("documents") {
                if a.len() > max_docs {
                    return Err(ApiError::too_large(format!(
                        "{} documents in one upload; the limit (max_upload_documents) is {max_docs}",
                        a.len()
                    )));
                }
            }
            let docs: Vec<DocInput> =
                serde_json::from_value(obj.get("documents").cloned().unwrap_or(Value::Null))
                    .map_err(|e| {
                        ApiError::unprocessable(format!(
                            "\"documents\" must be a list of {{id, text, ...}}: {e}"
                        ))
                    })?;
            if docs.is_empty() {
                return Err(ApiError::bad_request("documents must not be empty"));
            }
            let count = |key: &str, lo: u64, hi: u64| -> Result<Option<usize>, ApiError> {
                match obj.get(key) {
                    None | Some(Value::Null) => Ok(None),
                    Some(v) => match v.as_u64() {
                        Some(n) if (lo..=hi).contains(&n) => Ok(Some(n as usize)),
                        _ => Err(ApiError::unprocessable(format!(
                            "{key} must be an integer from {lo} to {hi}"
                        ))),
                    },
                }
            };
            let chunk_tokens = count("chunk_tokens", MIN_CHUNK_TOKENS, MAX_CHUNK_TOKENS)?;
            let overlap = count("overlap", 0, MAX_CHUNK_TOKENS)?.unwrap_or(0);
            if let Some(n) = chunk_tokens {
                if overlap >= n {
                    return Err(ApiError::unprocessable(format!(
                        "overlap ({overlap}) must be smaller than chunk_tokens ({n})"
                    )));
                }
            }
            let up = with_store(&state, move |store| {
                let chunk = chunk_tokens.map(|n| (n, overlap));
                store.upsert(&name, &docs, chunk, max_docs)
            })
            .await?;
            Ok(json!({"indexed": up.indexed, "count": up.count}))
        }
        .await,
    )
}

/// Deletes one document.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    ids: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    respond(
        async {
            let (name, id) = path(ids)?;
            let key = id.clone();
            match with_store(&state, move |store| store.delete(&name, &key)).await? {
                Some(count) => Ok(json!({"deleted": id, "count": count})),
                None => Err(ApiError::not_found(format!("no document {id:?}"))),
            }
        }
        .await,
    )
}

/// `{query, top_k, candidates, retriever, filters?, fusion?, min_score?}` -> results with
/// breakdowns, `answerable`, and the milliseconds of each stage.
pub async fn search(
    State(state): State<Arc<AppState>>,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    respond(
        async {
            let name = path(name)?;
            let mut obj = json_body(body, state.config.max_body_bytes)?;
            // `null` means "default" for every optional field.
            obj.retain(|_, v| !v.is_null());
            let req: SearchRequest = serde_json::from_value(Value::Object(obj))
                .map_err(|e| ApiError::unprocessable(format!("invalid search request: {e}")))?;
            let max = state.config.max_candidates;
            for (field, v) in [("candidates", req.candidates), ("top_k", req.top_k)] {
                if v > max {
                    return Err(ApiError::unprocessable(format!(
                        "{field} is {v}; the limit (max_candidates) is {max}"
                    )));
                }
            }
            // The store holds its lock for the first stage only; reranking runs beside other
            // searches.
            let (candidates, req) = with_store(&state, move |store| {
                let candidates = store.first_stage(&name, &req)?;
                Ok((candidates, req))
            })
            .await?;
            let r = candidates
                .finish_async(&req, now_unix(), |query, documents| async {
                    let job = RerankJob {
                        model: None,
                        query,
                        documents,
                        long_docs: LongDocs::Truncate(Direction::Right),
                        instruction: None,
                    };
                    rerank(&state, job)
                        .await
                        .map(|out| out.scores.iter().map(|s| s.score as f64).collect())
                })
                .await
                .map_err(|e| match e {
                    RerankFailed::Rerank(e) => e,
                    RerankFailed::Pipeline(e) => retrieve_error(e),
                })?;
            Ok(serde_json::to_value(r).unwrap_or(Value::Null))
        }
        .await,
    )
}

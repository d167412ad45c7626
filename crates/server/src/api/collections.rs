//! Search collections over HTTP: `POST /v1/collections/{name}/documents`,
//! `DELETE /v1/collections/{name}/documents/{id}`, `POST /v1/collections/{name}/search`.
//! Errors are `{"error": ...}`.

use super::json_body;
use crate::core::{rerank, LongDocs, RerankJob};
use crate::errors::{ApiError, Dialect};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use crossrank_engine::Direction;
use crossrank_retrieve::collection::{Collection, DocInput};
use crossrank_retrieve::pipeline::{first_stage, now_unix, SearchRequest};
use crossrank_retrieve::RetrieveError;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

fn valid_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ApiError::bad_request(format!(
            "collection name {name:?}: use 1-64 letters, digits, '-' or '_'"
        )));
    }
    Ok(())
}

fn retrieve_error(e: RetrieveError) -> ApiError {
    match e {
        RetrieveError::Invalid(m) => ApiError::bad_request(m),
        other => ApiError::internal(other.to_string()),
    }
}

/// The open collection `name`; `create` makes it if missing.
fn collection(
    state: &AppState,
    name: &str,
    create: bool,
) -> Result<Arc<Mutex<Collection>>, ApiError> {
    valid_name(name)?;
    let root = state.config.collections_dir.as_ref().ok_or_else(|| {
        ApiError::not_found(
            "collections are not enabled on this server (start it with --collections DIR)",
        )
    })?;
    let mut open = state.collections.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = open.get(name) {
        return Ok(c.clone());
    }
    let dir = root.join(name);
    if !create && !dir.join("collection.json").is_file() {
        return Err(ApiError::not_found(format!("no collection {name:?}")));
    }
    let c =
        Collection::open(&dir, state.config.embedder.as_deref(), true).map_err(retrieve_error)?;
    let c = Arc::new(Mutex::new(c));
    open.insert(name.to_string(), c.clone());
    Ok(c)
}

/// Runs collection work (disk, embedding, search) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
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
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    respond(
        async {
            let obj = json_body(body, state.config.max_body_bytes)?;
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
            let count = |key: &str| -> Result<Option<usize>, ApiError> {
                match obj.get(key) {
                    None | Some(Value::Null) => Ok(None),
                    Some(v) => v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
                        ApiError::unprocessable(format!("{key} must be a non-negative integer"))
                    }),
                }
            };
            let (chunk_tokens, overlap) = (count("chunk_tokens")?, count("overlap")?.unwrap_or(0));
            let c = collection(&state, &name, true)?;
            blocking(move || {
                let mut c = c.lock().unwrap_or_else(|p| p.into_inner());
                let docs = match chunk_tokens {
                    Some(n) => c.chunk_all(&docs, n, overlap).map_err(retrieve_error)?,
                    None => docs,
                };
                let n = c.upsert(&docs).map_err(retrieve_error)?;
                Ok(json!({"indexed": n, "count": c.len()}))
            })
            .await
        }
        .await,
    )
}

/// Deletes one document.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path((name, id)): Path<(String, String)>,
) -> Response {
    respond(
        async {
            let c = collection(&state, &name, false)?;
            blocking(move || {
                let mut c = c.lock().unwrap_or_else(|p| p.into_inner());
                let n = c
                    .delete(std::slice::from_ref(&id))
                    .map_err(retrieve_error)?;
                if n == 0 {
                    return Err(ApiError::not_found(format!("no document {id:?}")));
                }
                Ok(json!({"deleted": id, "count": c.len()}))
            })
            .await
        }
        .await,
    )
}

/// `{query, top_k, candidates, retriever, filters?, fusion?, min_score?}` -> results with
/// breakdowns, `answerable`, and the milliseconds of each stage.
pub async fn search(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    respond(
        async {
            let mut obj = json_body(body, state.config.max_body_bytes)?;
            // `null` means "default" for every optional field.
            obj.retain(|_, v| !v.is_null());
            let req: SearchRequest = serde_json::from_value(Value::Object(obj))
                .map_err(|e| ApiError::unprocessable(format!("invalid search request: {e}")))?;
            let c = collection(&state, &name, false)?;
            // The lock covers the first stage only; reranking runs beside other searches.
            let (candidates, req) = blocking(move || {
                let mut c = c.lock().unwrap_or_else(|p| p.into_inner());
                let candidates = first_stage(&mut c, &req).map_err(retrieve_error)?;
                Ok((candidates, req))
            })
            .await?;
            let documents = candidates.texts();
            let t = std::time::Instant::now();
            let relevance = if documents.is_empty() {
                Vec::new()
            } else {
                let job = RerankJob {
                    model: None,
                    query: req.query.clone(),
                    documents,
                    long_docs: LongDocs::Truncate(Direction::Right),
                };
                let out = rerank(&state, job).await?;
                out.scores.iter().map(|s| s.score as f64).collect()
            };
            let rerank_ms = t.elapsed().as_secs_f64() * 1e3;
            let r = candidates
                .fuse(&req, now_unix(), relevance, rerank_ms)
                .map_err(retrieve_error)?;
            Ok(serde_json::to_value(r).unwrap_or(Value::Null))
        }
        .await,
    )
}

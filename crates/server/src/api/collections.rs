//! Search collections over HTTP: `POST /v1/collections/{name}/documents`,
//! `DELETE /v1/collections/{name}/documents/{id}`, `POST /v1/collections/{name}/search`.
//! Errors are `{"error": ...}`.

use super::json_body;
use super::wire::{parse, ErrorBody};
use crate::core::{score, LongDocs};
use crate::errors::{ApiError, Dialect};
use crate::registry::{retrieve_error, store, with_store};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use crossrank_engine::Direction;
use crossrank_rank::ScoreOptions;
use crossrank_retrieve::collection::DocInput;
use crossrank_retrieve::pipeline::SearchResponse;
use crossrank_retrieve::pipeline::{self, now_unix, SearchRequest};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use utoipa::ToSchema;

/// Smallest `chunk_tokens` an upload may ask for.
const MIN_CHUNK_TOKENS: u64 = 8;
/// Largest `chunk_tokens` (no bi-encoder reads more in one pass).
const MAX_CHUNK_TOKENS: u64 = 8192;

fn path<T>(p: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    p.map(|Path(v)| v)
        .map_err(|e| ApiError::bad_request(format!("invalid path: {e}")))
}

fn respond<T: Serialize>(r: Result<T, ApiError>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.render(Dialect::Plain),
    }
}

/// An upload.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UploadRequest {
    /// The documents (at most the server's `max_upload_documents`, counted after chunking).
    pub documents: Vec<DocInput>,
    /// Split each document into chunks of this many bi-encoder tokens (8-8192), as
    /// `crossrank index --chunk-tokens` does.
    pub chunk_tokens: Option<u64>,
    /// Tokens shared by consecutive chunks (smaller than `chunk_tokens`).
    pub overlap: Option<u64>,
}

/// What an upload did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Indexed {
    /// Documents (chunks) written.
    pub indexed: usize,
    /// Documents in the collection afterwards.
    pub count: u64,
}

/// What a delete did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    /// The id deleted.
    pub deleted: String,
    /// Documents left.
    pub count: u64,
}

/// Adds or replaces documents (by id), creating the collection on first upload; chunking as
/// `crossrank index` does it. Acknowledged writes are durable.
#[utoipa::path(post, path = "/v1/collections/{name}/documents",
    operation_id = "upload_documents", tag = "Collections",
    params(("name" = String, Path, description = "Collection name: 1-64 letters, digits, - or _")),
    request_body = UploadRequest,
    responses((status = 200, body = Indexed), (status = "4XX", description = "The request's fault", body = ErrorBody),
        (status = "5XX", description = "Busy, unavailable (503, Retry-After when known) or failed",
            body = ErrorBody)))]
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
            let req: UploadRequest = parse(obj)?;
            let docs = req.documents;
            if docs.is_empty() {
                return Err(ApiError::bad_request("documents must not be empty"));
            }
            let range = |key: &str, v: Option<u64>, lo: u64, hi: u64| match v {
                Some(n) if !(lo..=hi).contains(&n) => Err(ApiError::unprocessable(format!(
                    "{key} must be an integer from {lo} to {hi}"
                ))),
                v => Ok(v.map(|n| n as usize)),
            };
            let chunk_tokens = range(
                "chunk_tokens",
                req.chunk_tokens,
                MIN_CHUNK_TOKENS,
                MAX_CHUNK_TOKENS,
            )?;
            let overlap = range("overlap", req.overlap, 0, MAX_CHUNK_TOKENS)?.unwrap_or(0);
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
            Ok(Indexed {
                indexed: up.indexed,
                count: up.count,
            })
        }
        .await,
    )
}

/// Deletes one document.
#[utoipa::path(delete, path = "/v1/collections/{name}/documents/{id}",
    operation_id = "delete_document", tag = "Collections",
    params(("name" = String, Path, description = "Collection name: 1-64 letters, digits, - or _"), ("id" = String, Path, description = "Document id")),
    responses((status = 200, body = Deleted), (status = "4XX", description = "The request's fault", body = ErrorBody),
        (status = "5XX", description = "Busy, unavailable (503, Retry-After when known) or failed",
            body = ErrorBody)))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    ids: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    respond(
        async {
            let (name, id) = path(ids)?;
            let key = id.clone();
            match with_store(&state, move |store| store.delete(&name, &key)).await? {
                Some(count) => Ok(Deleted { deleted: id, count }),
                None => Err(ApiError::not_found(format!("no document {id:?}"))),
            }
        }
        .await,
    )
}

/// First stage (bm25 | dense | hybrid), rerank with the default model, fusion and abstention:
/// results with their score breakdowns, `answerable`, and the milliseconds of each stage.
#[utoipa::path(post, path = "/v1/collections/{name}/search",
    operation_id = "search_collection", tag = "Collections",
    params(("name" = String, Path, description = "Collection name: 1-64 letters, digits, - or _")),
    request_body = SearchRequest,
    responses((status = 200, body = SearchResponse), (status = "4XX", description = "The request's fault", body = ErrorBody),
        (status = "5XX", description = "Busy, unavailable (503, Retry-After when known) or failed",
            body = ErrorBody)))]
pub async fn search(
    State(state): State<Arc<AppState>>,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    respond(
        async {
            let name = path(name)?;
            // `null` means "default" for every optional field.
            let obj = json_body(body, state.config.max_body_bytes)?;
            let own_fusion = obj.get("fusion").is_some_and(|f| !f.is_null());
            let mut req: SearchRequest = parse(obj)?;
            if let (false, Some(f)) = (own_fusion, &state.config.fusion) {
                req.fusion = f.clone();
            }
            let max = state.config.max_candidates;
            for (field, v) in [("candidates", req.candidates), ("top_k", req.top_k)] {
                if v > max {
                    return Err(ApiError::unprocessable(format!(
                        "{field} is {v}; the limit (max_candidates) is {max}"
                    )));
                }
            }
            // The one search path, on a blocking thread with the default model's reranker
            // (its batching queue): the store locks only for the first stage.
            let store = store(&state)?;
            let opts = ScoreOptions {
                long_docs: Some(LongDocs::Truncate(Direction::Right)),
                ..Default::default()
            };
            let handle = state.model(None)?;
            let r = score(&state, handle, opts, move |reranker, opts| {
                pipeline::search(&*store, &name, &req, now_unix(), reranker, opts)
                    .map_err(retrieve_error)
            })
            .await?;
            state.metrics.searched(&handle.name, !r.answerable);
            Ok::<SearchResponse, ApiError>(r)
        }
        .await,
    )
}

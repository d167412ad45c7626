//! HTTP routes: one file per API dialect, plus health / info / metrics / OpenAPI.

pub mod collections;
pub mod meta;
pub mod tei;
pub mod v1;
pub mod v2;

use crate::errors::{ApiError, Dialect};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Instant;

/// All routes with auth, metrics and the body limit.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .route("/rerank", post(tei::rerank))
        .route("/v1/rerank", post(v1::rerank))
        .route("/v2/rerank", post(v2::rerank))
        .route(
            "/v1/collections/{name}/documents",
            post(collections::upsert),
        )
        .route(
            "/v1/collections/{name}/documents/{id}",
            axum::routing::delete(collections::delete),
        )
        .route("/v1/collections/{name}/search", post(collections::search))
        .route("/health", get(meta::health))
        .route("/info", get(meta::info))
        .route("/metrics", get(meta::metrics))
        .route("/openapi.json", get(meta::openapi))
        .fallback(meta::not_found)
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .layer(middleware::from_fn_with_state(state.clone(), record))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Records every request's route, status and latency.
async fn record(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let t = Instant::now();
    let resp = next.run(req).await;
    state
        .metrics
        .request(&route, resp.status().as_u16(), t.elapsed().as_secs_f64());
    resp
}

/// Constant-time comparison (no early exit on the first differing byte).
fn same(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0xff);
        diff |= (x ^ y) as usize;
    }
    diff == 0
}

/// With API keys configured, requires `Authorization: Bearer <key>` (except on /health).
async fn auth(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let keys = &state.config.api_keys;
    if keys.is_empty() || req.uri().path() == "/health" {
        return next.run(req).await;
    }
    let dialect = Dialect::of_path(req.uri().path());
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(given) = given else {
        return ApiError::unauthorized("missing Authorization: Bearer <api key> header")
            .render(dialect);
    };
    // Compare with every key so the time does not say which one matched.
    let ok = keys
        .iter()
        .fold(false, |acc, k| same(k.as_bytes(), given.as_bytes()) | acc);
    if ok {
        next.run(req).await
    } else {
        ApiError::unauthorized("invalid API key").render(dialect)
    }
}

/// Parses a JSON object body, mapping body and syntax problems to 413 / 400.
pub fn json_body(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<Map<String, Value>, ApiError> {
    let bytes = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(format!("request body exceeds the limit of {limit} bytes"))
        } else {
            ApiError::bad_request(format!("cannot read the request body: {r}"))
        }
    })?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request(
            "the request body must be a JSON object",
        )),
        Err(e) => Err(ApiError::bad_request(format!("invalid JSON: {e}"))),
    }
}

/// Field accessors that name the field in their errors (422 for a wrong type). `null` counts
/// as absent for optional fields.
pub struct Fields<'a>(pub &'a Map<String, Value>);

impl Fields<'_> {
    fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }
    /// A required string.
    pub fn string(&self, name: &str) -> Result<String, ApiError> {
        match self.get(name) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(ApiError::unprocessable(format!(
                "field \"{name}\" must be a string"
            ))),
            None => Err(ApiError::unprocessable(format!("missing field \"{name}\""))),
        }
    }
    /// An optional string.
    pub fn opt_string(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ApiError::unprocessable(format!(
                "field \"{name}\" must be a string"
            ))),
        }
    }
    /// An optional boolean.
    pub fn opt_bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(ApiError::unprocessable(format!(
                "field \"{name}\" must be a boolean"
            ))),
        }
    }
    /// An optional positive integer.
    pub fn opt_count(&self, name: &str) -> Result<Option<usize>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if n >= 1 => Ok(Some(n as usize)),
                _ => Err(ApiError::unprocessable(format!(
                    "field \"{name}\" must be an integer >= 1"
                ))),
            },
        }
    }
    /// An optional list of strings.
    pub fn opt_strings(&self, name: &str) -> Result<Option<Vec<String>>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str().map(String::from).ok_or_else(|| {
                        ApiError::unprocessable(format!(
                            "field \"{name}\" must be a list of strings"
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(ApiError::unprocessable(format!(
                "field \"{name}\" must be a list of strings"
            ))),
        }
    }
    /// A required array.
    pub fn array(&self, name: &str) -> Result<&Vec<Value>, ApiError> {
        match self.get(name) {
            Some(Value::Array(a)) => Ok(a),
            Some(_) => Err(ApiError::unprocessable(format!(
                "field \"{name}\" must be a list"
            ))),
            None => Err(ApiError::unprocessable(format!("missing field \"{name}\""))),
        }
    }
}

/// A short random-looking id for responses.
pub fn request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = t ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ std::process::id() as u64;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    format!("{x:016x}-{n:08x}")
}

/// Cohere's billing unit: one query against up to 100 documents.
pub fn search_units(documents: usize) -> usize {
    documents.div_ceil(100).max(1)
}

//! HTTP routes: one file per API dialect, plus health / info / metrics / OpenAPI.

pub mod collections;
pub mod meta;
pub mod openapi;
pub mod tei;
pub mod v1;
pub mod v2;
pub mod wire;

use crate::errors::{ApiError, Dialect, ErrorType};
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

/// Every route the server serves, as (method, path); the router is built from this table and
/// a test checks that the generated OpenAPI document (`api::openapi`) lists exactly these.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/rerank"),
    ("POST", "/v1/rerank"),
    ("POST", "/v2/rerank"),
    ("POST", "/v1/collections/{name}/documents"),
    ("DELETE", "/v1/collections/{name}/documents/{id}"),
    ("POST", "/v1/collections/{name}/search"),
    ("GET", "/health"),
    ("GET", "/info"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
];

/// The handler of one entry of [`ROUTES`].
fn handler(method: &str, path: &str) -> axum::routing::MethodRouter<Arc<AppState>> {
    match (method, path) {
        ("POST", "/rerank") => post(tei::rerank),
        ("POST", "/v1/rerank") => post(v1::rerank),
        ("POST", "/v2/rerank") => post(v2::rerank),
        ("POST", "/v1/collections/{name}/documents") => post(collections::upsert),
        ("DELETE", "/v1/collections/{name}/documents/{id}") => {
            axum::routing::delete(collections::delete)
        }
        ("POST", "/v1/collections/{name}/search") => post(collections::search),
        ("GET", "/health") => get(meta::health),
        ("GET", "/info") => get(meta::info),
        ("GET", "/metrics") => get(meta::metrics),
        ("GET", "/openapi.json") => get(meta::openapi),
        // Unreachable for the table above; a new row without a handler fails every server test.
        (m, p) => panic!("ROUTES has {m} {p} but no handler"),
    }
}

/// All routes with auth, metrics and the body limit.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.config.max_body_bytes;
    ROUTES
        .iter()
        .fold(Router::new(), |r, (m, p)| r.route(p, handler(m, p)))
        .fallback(meta::not_found)
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .layer(middleware::from_fn(catch_panic))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
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

/// Refuses new requests once shutdown has begun, and makes every error JSON: responses that
/// the router or an extractor produced without a JSON body (405 for a wrong method, 400 for a
/// bad path, 413 from the body limit) get one in the dialect's shape.
async fn guard(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let dialect = Dialect::of_path(&path);
    if state.draining.load(std::sync::atomic::Ordering::Relaxed) && path != "/health" {
        return ApiError::unavailable("the server is shutting down").render(dialect);
    }
    let method = req.method().clone();
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let allow = resp.headers().get(header::ALLOW).cloned();
    let (_, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => format!(
            "method {method} is not allowed on {path}; use {}",
            allow
                .as_ref()
                .and_then(|a| a.to_str().ok())
                .unwrap_or(allowed_methods(&path))
        ),
        _ if !text.is_empty() => text,
        _ => status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_string(),
    };
    let err = ApiError::new(ErrorType::from_status(status), message);
    let mut out = err.render(dialect);
    if let Some(a) = allow {
        out.headers_mut().insert(header::ALLOW, a);
    }
    out
}

/// The methods the router serves on `path` (for 405 messages).
fn allowed_methods(path: &str) -> &'static str {
    match path {
        "/health" | "/info" | "/metrics" | "/openapi.json" => "GET",
        p if p.starts_with("/v1/collections/") && p.contains("/documents/") => "DELETE",
        _ => "POST",
    }
}

/// A handler that panics answers 500 in JSON instead of dropping the connection.
async fn catch_panic(req: Request, next: Next) -> Response {
    use futures_util::FutureExt;
    let dialect = Dialect::of_path(req.uri().path());
    match std::panic::AssertUnwindSafe(next.run(req))
        .catch_unwind()
        .await
    {
        Ok(resp) => resp,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            eprintln!("crossrank: a request handler panicked: {msg}");
            ApiError::internal(format!("internal error while handling the request: {msg}"))
                .render(dialect)
        }
    }
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

#[cfg(test)]
mod tests;

//! API errors, rendered in the shape each client dialect expects.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Which API a request came through, for the error body's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// TEI: `{"error", "error_type"}`.
    Tei,
    /// Cohere v1 / Jina / Voyage share `/v1/rerank`: `{"message", "detail"}` satisfies all three.
    V1,
    /// Cohere v2: `{"message"}`.
    V2,
    /// Everything else: `{"error"}`.
    Plain,
}

impl Dialect {
    /// The dialect of a request path.
    pub fn of_path(path: &str) -> Self {
        if path.starts_with("/v1/collections/") {
            Dialect::Plain
        } else if path == "/rerank" {
            Dialect::Tei
        } else if path.starts_with("/v1/") {
            Dialect::V1
        } else if path.starts_with("/v2/") {
            Dialect::V2
        } else {
            Dialect::Plain
        }
    }
}

/// An error answer: status, a TEI-style kind, a message naming the problem.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// TEI's `error_type`.
    pub kind: &'static str,
    /// Human-readable message.
    pub message: String,
    /// Seconds for a `Retry-After` header (429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
            retry_after: None,
        }
    }
    /// 400.
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Validation", m)
    }
    /// 401.
    pub fn unauthorized(m: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", m)
    }
    /// 404.
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "Validation", m)
    }
    /// 413.
    pub fn too_large(m: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "Validation", m)
    }
    /// 422.
    pub fn unprocessable(m: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "Validation", m)
    }
    /// 429 with Retry-After.
    pub fn overloaded(m: impl Into<String>, retry_after: u64) -> Self {
        ApiError {
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "Overloaded", m)
        }
    }
    /// 503.
    pub fn unavailable(m: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "Unhealthy", m)
    }
    /// 500.
    pub fn internal(m: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Backend", m)
    }

    /// The response in a dialect's shape.
    pub fn render(&self, dialect: Dialect) -> Response {
        let body = match dialect {
            Dialect::Tei => json!({"error": self.message, "error_type": self.kind}),
            Dialect::V1 => json!({"message": self.message, "detail": self.message}),
            Dialect::V2 => json!({"message": self.message}),
            Dialect::Plain => json!({"error": self.message}),
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

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

/// What went wrong, mapped to its HTTP status and TEI's `error_type` here and nowhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// 400: the request is malformed (bad JSON, a wrong type, a document too long to refuse).
    BadRequest,
    /// 401: no or a wrong API key.
    Unauthorized,
    /// 404: no such route, model, collection or document.
    NotFound,
    /// 405: the route exists with other methods.
    MethodNotAllowed,
    /// 413: over a size limit (body, documents, tokens).
    TooLarge,
    /// 422: well-formed but not servable (a value out of range, a policy a provider lacks).
    Unprocessable,
    /// 429: the queue is full or would answer too late; comes with Retry-After.
    Overloaded,
    /// 503: draining, a timeout, an upstream provider or the engine worker is down.
    Unavailable,
    /// 500: a bug or an engine failure.
    Internal,
    /// Any other status the HTTP stack produced before a handler ran (passed through as is).
    Other(StatusCode),
}

impl ErrorType {
    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorType::BadRequest => StatusCode::BAD_REQUEST,
            ErrorType::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorType::NotFound => StatusCode::NOT_FOUND,
            ErrorType::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorType::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorType::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            ErrorType::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::Other(s) => s,
        }
    }

    /// TEI's `error_type` for this kind.
    pub fn tei_name(self) -> &'static str {
        match self {
            ErrorType::Unauthorized => "Unauthorized",
            ErrorType::Overloaded => "Overloaded",
            ErrorType::Unavailable => "Unhealthy",
            ErrorType::Internal => "Backend",
            ErrorType::Other(s) if s.is_server_error() => "Backend",
            _ => "Validation",
        }
    }

    /// The kind of a status the HTTP stack answered with.
    pub fn from_status(status: StatusCode) -> ErrorType {
        match status {
            StatusCode::BAD_REQUEST => ErrorType::BadRequest,
            StatusCode::UNAUTHORIZED => ErrorType::Unauthorized,
            StatusCode::NOT_FOUND => ErrorType::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => ErrorType::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => ErrorType::TooLarge,
            StatusCode::UNPROCESSABLE_ENTITY => ErrorType::Unprocessable,
            StatusCode::TOO_MANY_REQUESTS => ErrorType::Overloaded,
            StatusCode::SERVICE_UNAVAILABLE => ErrorType::Unavailable,
            StatusCode::INTERNAL_SERVER_ERROR => ErrorType::Internal,
            other => ErrorType::Other(other),
        }
    }
}

/// An error answer: what kind, a message naming the problem, and Retry-After for 429.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The kind (and with it the status).
    pub kind: ErrorType,
    /// Human-readable message.
    pub message: String,
    /// Seconds for a `Retry-After` header (429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error of `kind`.
    pub fn new(kind: ErrorType, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
            retry_after: None,
        }
    }
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }
    /// 400.
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(ErrorType::BadRequest, m)
    }
    /// 401.
    pub fn unauthorized(m: impl Into<String>) -> Self {
        Self::new(ErrorType::Unauthorized, m)
    }
    /// 404.
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(ErrorType::NotFound, m)
    }
    /// 413.
    pub fn too_large(m: impl Into<String>) -> Self {
        Self::new(ErrorType::TooLarge, m)
    }
    /// 422.
    pub fn unprocessable(m: impl Into<String>) -> Self {
        Self::new(ErrorType::Unprocessable, m)
    }
    /// 429 with Retry-After.
    pub fn overloaded(m: impl Into<String>, retry_after: u64) -> Self {
        ApiError {
            retry_after: Some(retry_after),
            ..Self::new(ErrorType::Overloaded, m)
        }
    }
    /// 503.
    pub fn unavailable(m: impl Into<String>) -> Self {
        Self::new(ErrorType::Unavailable, m)
    }
    /// 500.
    pub fn internal(m: impl Into<String>) -> Self {
        Self::new(ErrorType::Internal, m)
    }

    /// The response in a dialect's shape.
    pub fn render(&self, dialect: Dialect) -> Response {
        let body = match dialect {
            Dialect::Tei => json!({"error": self.message, "error_type": self.kind.tei_name()}),
            Dialect::V1 => json!({"message": self.message, "detail": self.message}),
            Dialect::V2 => json!({"message": self.message}),
            Dialect::Plain => json!({"error": self.message}),
        };
        let mut resp = (self.status(), axum::Json(body)).into_response();
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_maps_to_its_status_and_back() {
        let kinds = [
            (ErrorType::BadRequest, 400, "Validation"),
            (ErrorType::Unauthorized, 401, "Unauthorized"),
            (ErrorType::NotFound, 404, "Validation"),
            (ErrorType::MethodNotAllowed, 405, "Validation"),
            (ErrorType::TooLarge, 413, "Validation"),
            (ErrorType::Unprocessable, 422, "Validation"),
            (ErrorType::Overloaded, 429, "Overloaded"),
            (ErrorType::Unavailable, 503, "Unhealthy"),
            (ErrorType::Internal, 500, "Backend"),
        ];
        for (kind, status, tei) in kinds {
            assert_eq!(kind.status().as_u16(), status, "{kind:?}");
            assert_eq!(kind.tei_name(), tei, "{kind:?}");
            assert_eq!(ErrorType::from_status(kind.status()), kind);
        }
        let teapot = ErrorType::from_status(StatusCode::IM_A_TEAPOT);
        assert_eq!(teapot, ErrorType::Other(StatusCode::IM_A_TEAPOT));
        assert_eq!(teapot.status().as_u16(), 418);
        assert_eq!(
            ErrorType::from_status(StatusCode::BAD_GATEWAY).tei_name(),
            "Backend"
        );
    }
}

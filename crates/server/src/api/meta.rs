//! `GET /health`, `/info`, `/metrics`, `/openapi.json`, and the JSON 404.

use crate::errors::{ApiError, Dialect};
use crate::state::{AppState, Backend};
use axum::extract::State;
use axum::http::{header, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use crossrank_rank::Reranker;
use serde_json::{json, Value};
use std::sync::Arc;

/// Liveness: 200 once the models are loaded (the server only listens after that).
pub async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Models, limits and version.
pub async fn info(State(state): State<Arc<AppState>>) -> Json<Value> {
    let c = &state.config;
    let models: Vec<Value> = state
        .models
        .iter()
        .map(|m| match &m.backend {
            Backend::Local(l) => {
                let cfg = l.model.config();
                json!({
                    "name": m.name,
                    "path": l.model.dir().display().to_string(),
                    "architecture": format!("{:?}", cfg.architecture),
                    "labels": cfg.num_labels,
                    "max_input_length": l.model.max_length(),
                    "quantize": l.quantize,
                    "threads": l.model.threads(),
                    "queue_depth": l.batcher.depth(),
                })
            }
            Backend::Hosted(h) => {
                json!({"name": m.name, "hosted": h.name(), "score_kind": "provider_relevance"})
            }
        })
        .collect();
    Json(json!({
        "name": "crossrank",
        "version": env!("CARGO_PKG_VERSION"),
        "model_id": state.models[0].name,
        "model_type": {"reranker": {}},
        "max_input_length": match &state.models[0].backend {
            Backend::Local(l) => Some(l.model.max_length()),
            Backend::Hosted(_) => None,
        },
        "models": models,
        "limits": {
            "max_batch_tokens": c.max_batch_tokens,
            "max_queue": c.max_queue,
            "max_documents": c.max_documents,
            "max_body_bytes": c.max_body_bytes,
            "request_timeout_ms": c.request_timeout_ms,
        },
        "auth": !c.api_keys.is_empty(),
        "dialects": ["tei:/rerank", "cohere-v1:/v1/rerank", "jina:/v1/rerank", "voyage:/v1/rerank", "cohere-v2:/v2/rerank"],
    }))
}

/// Prometheus text format.
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// The OpenAPI 3 description of the routes.
pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../openapi.json"),
    )
        .into_response()
}

/// Unknown routes.
pub async fn not_found(uri: Uri) -> Response {
    ApiError::not_found(format!("no route {}", uri.path())).render(Dialect::of_path(uri.path()))
}

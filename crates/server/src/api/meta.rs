//! `GET /health`, `/info`, `/metrics`, `/openapi.json`, and the JSON 404.

use crate::batcher::Health;
use crate::errors::{ApiError, Dialect};
use crate::state::{AppState, Backend};
use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use crossrank_rank::Reranker;
use serde_json::{json, Value};
use std::sync::Arc;

/// Readiness: 200 while every local model's worker is alive and its recent batches succeed;
/// 503 naming the model otherwise (a load balancer then takes this replica out), and 503
/// while shutting down. The server only listens once its models are loaded.
pub async fn health(State(state): State<Arc<AppState>>) -> Response {
    if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        let body = json!({"status": "unhealthy", "error": "the server is shutting down"});
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    let mut problems = Vec::new();
    for m in &state.models {
        if let Backend::Local(l) = &m.backend {
            match l.batcher.health() {
                Health::Ok => {}
                Health::Failing(n) => problems.push(format!(
                    "model {}: the last {n} engine batches failed",
                    m.name
                )),
                Health::Dead => {
                    problems.push(format!("model {}: the engine worker stopped", m.name))
                }
            }
        }
    }
    if problems.is_empty() {
        Json(json!({"status": "ok"})).into_response()
    } else {
        let body = json!({"status": "unhealthy", "error": problems.join("; ")});
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

/// Models, limits and version.
pub async fn info(State(state): State<Arc<AppState>>) -> Json<Value> {
    let c = &state.config;
    let stats = state.collections.as_ref().map(|s| s.stats());
    let models: Vec<Value> = state
        .models
        .iter()
        .map(|m| match &m.backend {
            Backend::Local(l) => {
                let cfg = l.model.config();
                json!({
                    "name": m.name,
                    "path": l.model.dir().display().to_string(),
                    "architecture": cfg.architecture.name(),
                    "labels": cfg.num_labels,
                    "template": l.model.template().name(),
                    "device": l.model.device(),
                    "max_input_length": l.model.max_length(),
                    "quantize": l.quantize,
                    "threads": l.model.threads(),
                    "queue_depth": l.batcher.depth(),
                    "predicted_wait_ms": l.batcher.predicted_wait().as_secs_f64() * 1e3,
                    "tokens_per_s": l.batcher.tokens_per_s(),
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
        "limits": c.limits(),
        "collections": {
            "enabled": state.collections.is_some(),
            "open": stats.map(|s| s.open).unwrap_or(0),
            "embedders_loaded": stats.map(|s| s.embedders_loaded).unwrap_or(0),
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

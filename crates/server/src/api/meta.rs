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

/// `/health`'s body.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct HealthBody {
    /// "ok" or "unhealthy".
    pub status: String,
    /// Why not healthy.
    pub error: Option<String>,
}

/// Readiness: 200 while every local model's worker is alive and its recent batches succeed;
/// 503 naming the model otherwise (a load balancer then takes this replica out), and 503
/// while shutting down. The server only listens once its models are loaded.
#[utoipa::path(get, path = "/health", tag = "Operations", security(()),
    responses((status = 200, body = HealthBody), (status = 503, body = HealthBody)))]
pub async fn health(State(state): State<Arc<AppState>>) -> Response {
    if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        let body = json!({"status": "unhealthy", "error": "the server is shutting down"});
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    let mut problems = Vec::new();
    for m in &state.models {
        if let Backend::Local { queued, .. } = &m.backend {
            match queued.health() {
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

/// Models (architecture, device, quantization, queue), limits, collections and version.
#[utoipa::path(get, path = "/info", tag = "Operations",
    responses((status = 200, description = "Server description", body = Object)))]
pub async fn info(State(state): State<Arc<AppState>>) -> Json<Value> {
    let c = &state.config;
    let stats = state.collections.as_ref().map(|s| s.stats());
    let models: Vec<Value> = state
        .models
        .iter()
        .map(|m| match &m.backend {
            Backend::Local {
                queued,
                quantize,
                calibration,
            } => {
                let model = queued.model();
                let cfg = model.config();
                json!({
                    "name": m.name,
                    "path": model.dir().display().to_string(),
                    "architecture": cfg.architecture.name(),
                    "labels": cfg.num_labels,
                    "template": model.template().name(),
                    "device": model.device(),
                    "device_name": model.device_name(),
                    "dtype": model.dtype().name(),
                    "device_memory_bytes": model.device_memory(),
                    "max_input_length": model.max_length(),
                    "quantize": quantize.name(),
                    "threads": model.threads(),
                    "queue_depth": queued.depth(),
                    "predicted_wait_ms": queued.predicted_wait().as_secs_f64() * 1e3,
                    "tokens_per_s": queued.tokens_per_s(),
                    "calibrated": calibration.is_some(),
                    "calibration": calibration.as_ref().map(|c| &c.calibration),
                })
            }
            Backend::Hosted(h) => {
                json!({"name": m.name, "hosted": h.name(), "score_kind": "provider_relevance"})
            }
            Backend::Cascade { stages } => {
                let stages: Vec<Value> = stages
                    .iter()
                    .map(|(model, k)| json!({"model": model, "rescores_best": k}))
                    .collect();
                json!({"name": m.name, "cascade": stages})
            }
        })
        .collect();
    Json(json!({
        "name": "crossrank",
        "version": env!("CARGO_PKG_VERSION"),
        "model_id": state.models[0].name,
        "model_type": {"reranker": {}},
        "max_input_length": match &state.models[0].backend {
            Backend::Local { queued, .. } => Some(queued.model().max_length()),
            Backend::Hosted(_) | Backend::Cascade { .. } => None,
        },
        "models": models,
        "limits": c.limits(),
        "collections": {
            "enabled": state.collections.is_some(),
            "store": state.collections.as_ref().map(|s| s.location()),
            "open": stats.map(|s| s.open).unwrap_or(0),
            "embedders_loaded": stats.map(|s| s.embedders_loaded).unwrap_or(0),
        },
        "auth": !c.api_keys.is_empty(),
        "dialects": ["tei:/rerank", "cohere-v1:/v1/rerank", "jina:/v1/rerank", "voyage:/v1/rerank", "cohere-v2:/v2/rerank"],
    }))
}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "Operations",
    responses((status = 200, description = "Prometheus text exposition", body = String,
        content_type = "text/plain")))]
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let mut text = state.metrics.render();
    let caches: Vec<_> = state
        .models
        .iter()
        .filter_map(|m| Some((&m.name, m.cache.as_ref()?.stats())))
        .collect();
    if !caches.is_empty() {
        use std::fmt::Write;
        type Read = fn(&crossrank_rank::cache::CacheStats) -> f64;
        let series: [(&str, &str, &str, Read); 4] = [
            (
                "crossrank_cache_hits_total",
                "counter",
                "Documents answered from the pair-score cache (or repeated inside their request).",
                |s| s.hits as f64,
            ),
            (
                "crossrank_cache_misses_total",
                "counter",
                "Documents the model scored because the cache did not hold them.",
                |s| s.misses as f64,
            ),
            (
                "crossrank_cache_bytes",
                "gauge",
                "Estimated memory held by the pair-score cache.",
                |s| s.bytes as f64,
            ),
            (
                "crossrank_cache_entries",
                "gauge",
                "Pairs held by the pair-score cache.",
                |s| s.entries as f64,
            ),
        ];
        for (metric, kind, help, read) in series {
            let _ = writeln!(text, "# HELP {metric} {help}\n# TYPE {metric} {kind}");
            for (name, s) in &caches {
                let _ = writeln!(text, "{metric}{{model=\"{name}\"}} {}", read(s));
            }
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// The OpenAPI 3 description of the routes, generated from the wire types.
#[utoipa::path(get, path = "/openapi.json", tag = "Operations",
    responses((status = 200, description = "This document", body = Object)))]
pub async fn openapi() -> Response {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let doc = DOC.get_or_init(|| super::openapi::document().to_string());
    ([(header::CONTENT_TYPE, "application/json")], doc.as_str()).into_response()
}

/// Unknown routes.
pub async fn not_found(uri: Uri) -> Response {
    ApiError::not_found(format!("no route {}", uri.path())).render(Dialect::of_path(uri.path()))
}

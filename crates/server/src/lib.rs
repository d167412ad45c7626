//! crossrank's HTTP server: one port that speaks TEI (`/rerank`), Cohere v1 / Jina / Voyage
//! (`/v1/rerank`) and Cohere v2 (`/v2/rerank`), with a dynamic batching queue in front of each
//! model, limits, Prometheus metrics and bearer-token auth.

pub mod api;
pub mod batcher;
pub mod config;
pub mod core;
pub mod errors;
pub mod metrics;
pub mod queued;
pub mod registry;
pub mod state;

pub use config::{ModelEntry, ServerConfig};
pub use state::AppState;

use std::sync::Arc;

/// Errors that stop the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A model could not be loaded.
    #[error("model {name}: {source}")]
    Model {
        /// The model's name in the server.
        name: String,
        /// Why.
        source: crossrank_engine::EngineError,
    },
    /// The configuration is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// host:port.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// Loads the models, binds, prints `crossrank listening on http://ADDR` and serves until
/// SIGINT or SIGTERM, then finishes in-flight requests and returns. Blocking: it runs its own
/// async runtime (models and hosted clients are created and dropped outside it).
pub fn run(config: ServerConfig) -> Result<(), ServerError> {
    let state = Arc::new(AppState::load(config)?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(serve(state.clone()));
    // Blocking tasks still running past the drain deadline are not waited for long.
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    drop(state);
    result
}

async fn serve(state: Arc<AppState>) -> Result<(), ServerError> {
    let addr = format!("{}:{}", state.config.host, state.config.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: addr.clone(),
            source,
        })?;
    let local = listener.local_addr()?;
    println!("crossrank listening on http://{local}");
    for m in &state.models {
        match &m.backend {
            state::Backend::Local { queued, .. } => {
                println!("model {} = {}", m.name, queued.model().dir().display())
            }
            state::Backend::Hosted(_) | state::Backend::Cascade { .. } => {
                println!("model {} = {}", m.name, m.reranker.name())
            }
        }
    }
    if let Some(store) = &state.collections {
        println!("collections in {}", store.location());
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let every = state.config.collection_save_secs;
    let saver = (every > 0 && state.config.collections_dir.is_some()).then(|| {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(every));
            tick.tick().await;
            loop {
                tick.tick().await;
                let state = state.clone();
                let _ = tokio::task::spawn_blocking(move || save_collections(&state, false)).await;
            }
        })
    });
    let signalled = Arc::new(tokio::sync::Notify::new());
    let (st, notify) = (state.clone(), signalled.clone());
    let server =
        axum::serve(listener, api::router(state.clone())).with_graceful_shutdown(async move {
            shutdown_signal().await;
            st.draining
                .store(true, std::sync::atomic::Ordering::Relaxed);
            eprintln!("crossrank: shutting down after in-flight requests");
            notify.notify_one();
        });
    let grace = std::time::Duration::from_millis(state.config.shutdown_grace_ms);
    tokio::select! {
        r = server => r?,
        _ = async { signalled.notified().await; tokio::time::sleep(grace).await } => {
            eprintln!(
                "crossrank: requests still in flight after shutdown_grace_ms ({} ms); exiting",
                state.config.shutdown_grace_ms
            );
        }
    }
    if let Some(s) = saver {
        s.abort();
    }
    let st = state.clone();
    let _ = tokio::task::spawn_blocking(move || save_collections(&st, true)).await;
    Ok(())
}

/// Saves the changed dense indexes of the open collections; `wait` for busy ones (else they
/// are skipped until the next round).
fn save_collections(state: &AppState, wait: bool) {
    if let Some(store) = &state.collections {
        store.flush(wait);
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

//! The server's open search collections: opened on first use off the async workers (never
//! while holding the registry's lock), capped at `max_collections`, and sharing one
//! bi-encoder per distinct embedder.

use crate::errors::ApiError;
use crate::state::AppState;
use crossrank_retrieve::collection::Collection;
use crossrank_retrieve::embedders::Embedders;
use crossrank_retrieve::RetrieveError;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

/// One open collection, locked by whoever reads or writes it.
pub type SharedCollection = Arc<Mutex<Collection>>;

type Slot = Arc<OnceCell<SharedCollection>>;

/// Collections by name, and the bi-encoders they share.
#[derive(Default)]
pub struct Collections {
    slots: Mutex<HashMap<String, Slot>>,
    embedders: Embedders,
    /// Held while a new collection is counted and created, so two creations cannot both
    /// pass the `max_collections` check.
    creating: Mutex<()>,
}

impl Collections {
    /// The collections opened so far.
    pub fn open_ones(&self) -> Vec<(String, SharedCollection)> {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(|(n, s)| s.get().map(|c| (n.clone(), c.clone())))
            .collect()
    }

    /// Distinct bi-encoders loaded.
    pub fn embedders_loaded(&self) -> usize {
        self.embedders.loaded()
    }
}

/// Checks a collection name (the rule is retrieve's).
pub fn valid_name(name: &str) -> Result<(), ApiError> {
    crossrank_retrieve::collection::valid_name(name).map_err(retrieve_error)
}

/// Maps a retrieval error: the caller's mistakes are 4xx, the rest 500.
pub fn retrieve_error(e: RetrieveError) -> ApiError {
    match e {
        RetrieveError::Invalid(m) => ApiError::bad_request(m),
        RetrieveError::Engine(crossrank_engine::EngineError::InvalidOption(m)) => {
            ApiError::unprocessable(m)
        }
        other => ApiError::internal(other.to_string()),
    }
}

/// The open collection `name`; `create` makes it if missing (within `max_collections`).
pub async fn collection(
    state: &Arc<AppState>,
    name: &str,
    create: bool,
) -> Result<SharedCollection, ApiError> {
    valid_name(name)?;
    if state.config.collections_dir.is_none() {
        return Err(ApiError::not_found(
            "collections are not enabled on this server (start it with --collections DIR)",
        ));
    }
    let slot: Slot = state
        .collections
        .slots
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(name.to_string())
        .or_default()
        .clone();
    let st = state.clone();
    let n = name.to_string();
    let result = slot
        .get_or_try_init(|| async move {
            tokio::task::spawn_blocking(move || open(&st, &n, create))
                .await
                .map_err(|e| ApiError::internal(format!("opening the collection failed: {e}")))?
        })
        .await
        .cloned();
    if result.is_err() {
        // Forget a slot that never opened, so that failed names do not pile up.
        let mut slots = state
            .collections
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(s) = slots.get(name) {
            if Arc::ptr_eq(s, &slot) && s.get().is_none() {
                slots.remove(name);
            }
        }
    }
    result
}

fn count_collections(root: &Path) -> usize {
    std::fs::read_dir(root)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| Collection::exists(&e.path()))
                .count()
        })
        .unwrap_or(0)
}

/// Opens (or creates) a collection; blocking.
fn open(state: &AppState, name: &str, create: bool) -> Result<SharedCollection, ApiError> {
    let root = state
        .config
        .collections_dir
        .as_deref()
        .ok_or_else(|| ApiError::not_found("collections are not enabled on this server"))?;
    let dir = root.join(name);
    let embedder = state.config.embedder.as_deref();
    let shared = Some(&state.collections.embedders);
    if Collection::exists(&dir) {
        let c = Collection::open_shared(&dir, embedder, shared).map_err(retrieve_error)?;
        return Ok(Arc::new(Mutex::new(c)));
    }
    if !create {
        return Err(ApiError::not_found(format!("no collection {name:?}")));
    }
    let _creating = state
        .collections
        .creating
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let max = state.config.max_collections;
    let have = count_collections(root);
    if have >= max {
        return Err(ApiError::unprocessable(format!(
            "this server holds {have} collections, the limit (max_collections) is {max}; \
             collection {name:?} was not created"
        )));
    }
    let c = Collection::open_shared(&dir, embedder, shared).map_err(retrieve_error)?;
    Ok(Arc::new(Mutex::new(c)))
}

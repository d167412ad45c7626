//! The server's side of the collection store: the store a request reaches, run off the async
//! workers, and retrieval errors as HTTP statuses. Which collections exist, their names, layout,
//! creation limit and saving belong to the store (`crossrank_retrieve::store`).

use crate::errors::ApiError;
use crate::state::AppState;
use crossrank_retrieve::store::CollectionStore;
use crossrank_retrieve::RetrieveError;
use std::sync::Arc;

/// Maps a retrieval error: the caller's mistakes are 4xx, the rest 500.
pub fn retrieve_error(e: RetrieveError) -> ApiError {
    match e {
        RetrieveError::Invalid(m) => ApiError::bad_request(m),
        RetrieveError::NotFound(m) => ApiError::not_found(m),
        RetrieveError::Limit(m) => ApiError::unprocessable(m),
        RetrieveError::TooLarge(m) => ApiError::too_large(m),
        RetrieveError::Engine(crossrank_engine::EngineError::InvalidOption(m)) => {
            ApiError::unprocessable(m)
        }
        RetrieveError::Rank(e) => crate::core::request_error(e),
        RetrieveError::Unavailable(m) => ApiError::unavailable(m),
        other => ApiError::internal(other.to_string()),
    }
}

/// The collection store; 404 when collections are not enabled.
pub fn store(state: &AppState) -> Result<Arc<dyn CollectionStore>, ApiError> {
    state.collections.clone().ok_or_else(|| {
        ApiError::not_found(
            "collections are not enabled on this server (start it with --collections DIR or --store postgres://...)",
        )
    })
}

/// Runs `f` on the store off the async workers; 404 when collections are not enabled.
pub async fn with_store<T: Send + 'static>(
    state: &Arc<AppState>,
    f: impl FnOnce(&dyn CollectionStore) -> Result<T, RetrieveError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = store(state)?;
    tokio::task::spawn_blocking(move || f(store.as_ref()))
        .await
        .map_err(|e| ApiError::internal(format!("the collection task failed: {e}")))?
        .map_err(retrieve_error)
}

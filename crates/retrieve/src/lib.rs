//! First-stage retrieval: one file per retriever.

pub mod bm25;

/// Errors of the retrievers.
#[derive(Debug, thiserror::Error)]
pub enum RetrieveError {
    /// The index failed.
    #[error("index error: {0}")]
    Index(#[from] tantivy::TantivyError),
}

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, RetrieveError>;

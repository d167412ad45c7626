//! First-stage retrieval: one file per retriever.

pub mod bm25;
pub mod collection;
pub mod dense;
pub mod hybrid;
pub mod pipeline;
pub mod scan;

/// Errors of the retrievers.
#[derive(Debug, thiserror::Error)]
pub enum RetrieveError {
    /// The index failed.
    #[error("index error: {0}")]
    Index(#[from] tantivy::TantivyError),
    /// The embedder failed.
    #[error(transparent)]
    Engine(#[from] crossrank_engine::EngineError),
    /// A file of the collection could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A document or option is invalid.
    #[error("{0}")]
    Invalid(String),
    /// The dense index failed.
    #[error(transparent)]
    Dense(#[from] crate::dense::DenseError),
    /// The reranker failed.
    #[error(transparent)]
    Rank(#[from] crossrank_rank::RankError),
}

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, RetrieveError>;

//! First-stage retrieval: one file per retriever.

pub mod bm25;
pub mod collection;
pub mod dense;
pub mod embedders;
pub mod hybrid;
pub mod once_map;
pub mod pipeline;
pub mod scan;
pub mod store;

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
    /// No such collection (or document).
    #[error("{0}")]
    NotFound(String),
    /// A store limit refuses the request (too many collections).
    #[error("{0}")]
    Limit(String),
    /// The request is over a size limit (documents after chunking).
    #[error("{0}")]
    TooLarge(String),
    /// The collection store's database cannot be reached (a 503: retry later).
    #[error("{0}")]
    Unavailable(String),
    /// The collection store's database refused a statement.
    #[error("{0}")]
    Store(String),
    /// The dense index failed.
    #[error(transparent)]
    Dense(#[from] crate::dense::DenseError),
    /// The reranker failed.
    #[error(transparent)]
    Rank(#[from] crossrank_rank::RankError),
}

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, RetrieveError>;

/// Deterministic test vectors.
#[cfg(test)]
pub(crate) mod testing {
    /// Values in [-1, 1) from a xorshift generator.
    pub fn uniform(seed: u64) -> impl FnMut() -> f32 {
        let mut state = seed;
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 10_000) as f32 / 5_000.0 - 1.0
        }
    }

    /// `n` unit vectors around `centers` random centres (point i near centre i % centers);
    /// `centers == 0` gives uniform directions.
    pub fn vectors(n: usize, dim: usize, centers: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut rnd = uniform(seed);
        let c: Vec<Vec<f32>> = (0..centers)
            .map(|_| (0..dim).map(|_| rnd()).collect())
            .collect();
        (0..n)
            .map(|i| {
                let v: Vec<f32> = match c.get(i % centers.max(1)) {
                    Some(c) => c.iter().map(|x| x + 0.3 * rnd()).collect(),
                    None => (0..dim).map(|_| rnd()).collect(),
                };
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.into_iter().map(|x| x / norm).collect()
            })
            .collect()
    }
}

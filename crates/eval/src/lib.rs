//! Evaluation of rankings: trec_eval-compatible metrics, datasets, first stage vs reranked vs
//! fused comparisons with significance tests, candidate-count sweeps, and reports.

pub mod datasets;
pub mod harness;
pub mod metrics;
pub mod qrels;
pub mod report;
pub mod run;
pub mod stats;
pub mod tune;

/// Errors of the evaluation crate.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A line or field of an input file is malformed.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// 1-based line (0 when not line-based).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Anything else that makes the evaluation impossible.
    #[error("{0}")]
    Invalid(String),
    /// The reranker failed.
    #[error(transparent)]
    Rank(#[from] crossrank_rank::RankError),
}

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, EvalError>;

pub(crate) fn read_text(path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| EvalError::Io {
        path: path.display().to_string(),
        source,
    })
}

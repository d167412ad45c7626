//! One module per subcommand.

pub mod bench;
pub mod bench_postgres;
pub mod bench_retrieval;
pub mod calibrate;
pub mod eval;
pub mod index;
pub mod loadtest;
pub mod models;
pub mod rerank;
pub mod score;
pub mod search;
pub mod serve;

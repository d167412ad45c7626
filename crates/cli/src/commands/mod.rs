//! One module per subcommand.

pub mod bench;
pub mod models;
pub mod rerank;
pub mod score;

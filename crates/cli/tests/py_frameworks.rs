//! The RAG frameworks' own rerankers against a real server: LlamaIndex `TextEmbeddingInference`
//! and `CohereRerank`, Haystack `CohereRanker` and `HuggingFaceTEIRanker`, AnswerDotAI
//! `rerankers` `APIRanker` (TEI and Cohere providers). Each must rank like `crossrank score` on
//! the same pairs, with the same scores. (LangChain's `CohereRerank` is in `py_clients.rs`.)
//! The test setup installs the frameworks with pip into a venv under the target dir.

mod common;

use common::*;
use serde_json::Value;

#[test]
#[ignore = "e2e: LlamaIndex, Haystack and rerankers from PyPI"]
fn rag_frameworks_rank_like_crossrank_score() {
    let py = venv(
        "py-frameworks-venv",
        &[
            "llama-index-postprocessor-tei-rerank",
            "llama-index-postprocessor-cohere-rerank",
            "haystack-ai",
            "cohere-haystack",
            "huggingface-api-haystack",
            "rerankers",
        ],
    );
    let srv = serve(&["--api-key", "test-key"]);
    let (q, docs) = w50();
    let docs: Vec<String> = docs.into_iter().take(12).collect();
    let want = score_with_cli(&q, &docs, &[]);
    let dir = temp_dir("pyframeworks");
    let req = dir.join("request.json");
    std::fs::write(
        &req,
        serde_json::json!({"query": q, "documents": docs}).to_string(),
    )
    .unwrap();
    let script = repo().join("crates/cli/tests/py/frameworks.py");
    let out = Cmd::new(&py)
        .arg(&script)
        .args([&srv.url, "minilm-l6-rerank", "test-key"])
        .arg(&req)
        .ok();
    let got: Value = serde_json::from_str(out.trim()).unwrap();
    let mut order: Vec<usize> = (0..want.len()).collect();
    order.sort_by(|&a, &b| want[b].total_cmp(&want[a]));
    let frameworks = [
        "llama_index.TextEmbeddingInference",
        "llama_index.CohereRerank",
        "haystack.CohereRanker",
        "haystack.HuggingFaceTEIRanker",
        "rerankers.APIRanker(text-embeddings-inference)",
        "rerankers.APIRanker(cohere)",
    ];
    for name in frameworks {
        let res = got[name]
            .as_array()
            .unwrap_or_else(|| panic!("{name} missing: {got}"));
        assert_eq!(res.len(), want.len(), "{name}: {res:?}");
        for (k, r) in res.iter().enumerate() {
            let (i, s) = (r[0].as_u64().unwrap() as usize, r[1].as_f64().unwrap());
            assert_eq!(i, order[k], "{name}: rank {k}");
            assert!(
                (s - want[i]).abs() <= 1e-6,
                "{name}: index {i} score {s} vs {}",
                want[i]
            );
        }
    }
}

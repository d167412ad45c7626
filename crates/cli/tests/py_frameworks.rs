//! The RAG frameworks' own rerankers against a real server: LlamaIndex `TextEmbeddingInference`
//! and `CohereRerank`, Haystack `CohereRanker` and `HuggingFaceTEIRanker`, AnswerDotAI
//! `rerankers` `APIRanker` (TEI and Cohere providers). Each must rank like `crossrank score` on
//! the same pairs, with the same scores. (LangChain's `CohereRerank` is in `py_clients.rs`.)
//! The test setup installs the frameworks with pip into a venv under the target dir.

mod common;

use common::*;

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
    let (got, want) = script_against_server(&py, "frameworks.py", 12);
    assert_ranked_like(
        &got,
        &[
            "llama_index.TextEmbeddingInference",
            "llama_index.CohereRerank",
            "haystack.CohereRanker",
            "haystack.HuggingFaceTEIRanker",
            "rerankers.APIRanker(text-embeddings-inference)",
            "rerankers.APIRanker(cohere)",
        ],
        &want,
    );
}

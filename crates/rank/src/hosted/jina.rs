//! Jina: `POST /v1/rerank` `{model, query, documents, top_n, return_documents: false}` ->
//! `results[{index, relevance_score}]`; sent in calls of at most 1,000 documents.

use super::{parse_results, Provider};
use serde_json::{json, Value};

pub(crate) struct Jina {
    pub model: String,
}

impl Provider for Jina {
    fn name(&self) -> &'static str {
        "jina"
    }
    fn model(&self) -> &str {
        &self.model
    }
    fn default_base(&self) -> Option<&'static str> {
        Some("https://api.jina.ai")
    }
    fn base_env(&self) -> Option<&'static str> {
        Some("JINA_BASE_URL")
    }
    fn key_env(&self) -> Option<&'static str> {
        Some("JINA_API_KEY")
    }
    fn endpoint(&self, base: &str) -> String {
        format!("{base}/v1/rerank")
    }
    fn body(&self, query: &str, docs: &[&str]) -> Value {
        json!({"model": self.model, "query": query, "documents": docs, "top_n": docs.len(), "return_documents": false})
    }
    fn parse(&self, v: &Value) -> Result<Vec<(usize, f32)>, String> {
        parse_results(v, "results", "relevance_score")
    }
    fn max_documents(&self) -> usize {
        1000
    }
}

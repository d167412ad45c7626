//! Cohere v2: `POST /v2/rerank` `{model, query, documents, top_n}` -> `results[{index,
//! relevance_score}]`. Cohere recommends at most 1,000 documents per request.

use super::{parse_results, Provider};
use serde_json::{json, Value};

pub(crate) struct Cohere {
    pub model: String,
}

impl Provider for Cohere {
    fn name(&self) -> &'static str {
        "cohere"
    }
    fn model(&self) -> &str {
        &self.model
    }
    fn default_base(&self) -> Option<&'static str> {
        Some("https://api.cohere.com")
    }
    fn base_env(&self) -> Option<&'static str> {
        Some("COHERE_BASE_URL")
    }
    fn key_env(&self) -> Option<&'static str> {
        Some("COHERE_API_KEY")
    }
    fn endpoint(&self, base: &str) -> String {
        format!("{base}/v2/rerank")
    }
    fn body(&self, query: &str, docs: &[&str]) -> Value {
        json!({"model": self.model, "query": query, "documents": docs, "top_n": docs.len()})
    }
    fn parse(&self, v: &Value) -> Result<Vec<(usize, f32)>, String> {
        parse_results(v, "results", "relevance_score")
    }
    fn max_documents(&self) -> usize {
        1000
    }
}

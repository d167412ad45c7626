//! Voyage: `POST /v1/rerank` `{query, documents, model, top_k, truncation: true}` ->
//! `data[{index, relevance_score}]`. Limits: 1,000 documents, and (rerank-2.5 / rerank-2)
//! 600,000 tokens per request (300,000 for the lite models), estimated here as chars / 4.

use super::{parse_results, Provider};
use serde_json::{json, Value};

pub(crate) struct Voyage {
    pub model: String,
}

impl Provider for Voyage {
    fn name(&self) -> &'static str {
        "voyage"
    }
    fn model(&self) -> &str {
        &self.model
    }
    fn default_base(&self) -> Option<&'static str> {
        Some("https://api.voyageai.com")
    }
    fn base_env(&self) -> Option<&'static str> {
        Some("VOYAGE_BASE_URL")
    }
    fn key_env(&self) -> Option<&'static str> {
        Some("VOYAGE_API_KEY")
    }
    fn endpoint(&self, base: &str) -> String {
        format!("{base}/v1/rerank")
    }
    fn body(&self, query: &str, docs: &[&str]) -> Value {
        json!({"query": query, "documents": docs, "model": self.model, "top_k": docs.len(), "truncation": true})
    }
    fn truncation_switch(&self) -> Option<&'static str> {
        Some("truncation")
    }
    fn parse(&self, v: &Value) -> Result<Vec<(usize, f32)>, String> {
        parse_results(v, "data", "relevance_score")
    }
    fn max_documents(&self) -> usize {
        1000
    }
    fn max_tokens(&self) -> Option<usize> {
        Some(if self.model.contains("lite") {
            300_000
        } else {
            600_000
        })
    }
}

//! Another crossrank server: `crossrank:http://host:port[#model]` -> `POST /v1/rerank`.
//! Its scores are the model's probabilities, like a local model's.

use super::{parse_results, Provider};
use crate::ScoreKind;
use serde_json::{json, Value};

pub(crate) struct Crossrank {
    url: String,
    model: Option<String>,
}

impl Crossrank {
    pub fn from_spec(rest: &str) -> Self {
        let (url, model) = match rest.split_once('#') {
            Some((u, m)) if !m.is_empty() => (u, Some(m.to_string())),
            _ => (rest, None),
        };
        let url = url
            .trim_end_matches('/')
            .trim_end_matches("/v1/rerank")
            .to_string();
        Crossrank { url, model }
    }
}

impl Provider for Crossrank {
    fn name(&self) -> &'static str {
        "crossrank"
    }
    fn model(&self) -> &str {
        &self.url
    }
    fn endpoint(&self, base: &str) -> String {
        format!(
            "{}/v1/rerank",
            if base.is_empty() { &self.url } else { base }
        )
    }
    fn body(&self, query: &str, docs: &[&str]) -> Value {
        json!({"query": query, "documents": docs, "model": self.model, "return_documents": false})
    }
    fn truncation_switch(&self) -> Option<&'static str> {
        Some("truncation")
    }
    fn parse(&self, v: &Value) -> Result<Vec<(usize, f32)>, String> {
        parse_results(v, "results", "relevance_score")
    }
    fn max_documents(&self) -> usize {
        1000
    }
    fn score_kind(&self) -> ScoreKind {
        ScoreKind::Probability
    }
}

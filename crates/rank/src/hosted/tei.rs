//! Text Embeddings Inference: `POST URL/rerank` `{query, texts, truncate: true}` ->
//! `[{index, score}]`. TEI's default `--max-client-batch-size` is 32, so calls carry 32 texts.

use super::{parse_items, Provider};
use serde_json::{json, Value};

pub(crate) struct Tei {
    pub url: String,
}

impl Provider for Tei {
    fn name(&self) -> &'static str {
        "tei"
    }
    fn model(&self) -> &str {
        &self.url
    }
    fn endpoint(&self, base: &str) -> String {
        format!("{}/rerank", if base.is_empty() { &self.url } else { base })
    }
    fn body(&self, query: &str, docs: &[&str]) -> Value {
        json!({"query": query, "texts": docs, "truncate": true, "raw_scores": false})
    }
    fn truncation_switch(&self) -> Option<&'static str> {
        Some("truncate")
    }
    fn parse(&self, v: &Value) -> Result<Vec<(usize, f32)>, String> {
        parse_items(
            v.as_array()
                .ok_or("the response is not a list of {index, score}")?,
            "score",
        )
    }
    fn max_documents(&self) -> usize {
        32
    }
}

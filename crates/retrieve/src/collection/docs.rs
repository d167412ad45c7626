//! What a collection stores: the document model, `collection.json` and the tantivy schema.

use crate::dense::AnnConfig;
use serde::{Deserialize, Serialize};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, STORED, STRING,
};

/// A document (or chunk) as given to `index`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DocInput {
    /// Unique id; re-indexing an id replaces it.
    pub id: String,
    /// Text.
    pub text: String,
    /// Title, indexed with the text.
    #[serde(default)]
    pub title: Option<String>,
    /// Source name (for authority).
    #[serde(default)]
    pub source: Option<String>,
    /// RFC 3339 date (for freshness).
    #[serde(default)]
    pub updated_at: Option<String>,
    /// Parent document of a chunk (default: the id).
    #[serde(default)]
    pub doc_id: Option<String>,
    /// Anything else, kept as given.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: Option<serde_json::Value>,
}

impl DocInput {
    /// A document with only an id and a text.
    pub fn new(id: impl Into<String>, text: impl Into<String>) -> Self {
        DocInput {
            id: id.into(),
            text: text.into(),
            title: None,
            source: None,
            updated_at: None,
            doc_id: None,
            metadata: None,
        }
    }
}

/// A stored document.
#[derive(Debug, Clone, Serialize)]
pub struct StoredDoc {
    /// Id.
    pub id: String,
    /// Parent document.
    pub doc_id: String,
    /// Text.
    pub text: String,
    /// Title.
    pub title: Option<String>,
    /// Source.
    pub source: Option<String>,
    /// RFC 3339 date.
    pub updated_at: Option<String>,
    /// Metadata.
    pub metadata: Option<serde_json::Value>,
}

impl StoredDoc {
    /// Age in days at `now` (unix seconds), if dated.
    pub fn age_days(&self, now: i64) -> Option<f64> {
        let t = self.updated_at.as_deref().and_then(parse_date)?;
        Some((now - t) as f64 / 86_400.0)
    }
}

/// Refuses an empty id and an `updated_at` that is not RFC 3339 (every store checks uploads
/// with this).
pub fn validate(docs: &[DocInput]) -> crate::Result<()> {
    for d in docs {
        if d.id.is_empty() {
            return Err(crate::RetrieveError::Invalid(
                "a document has an empty id".into(),
            ));
        }
        if let Some(u) = &d.updated_at {
            if parse_date(u).is_none() {
                return Err(crate::RetrieveError::Invalid(format!(
                    "document {}: updated_at {u:?} is not RFC 3339",
                    d.id
                )));
            }
        }
    }
    Ok(())
}

/// Unix seconds of an RFC 3339 date.
pub fn parse_date(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// `collection.json`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Manifest {
    /// Bi-encoder directory used for the stored embeddings (none: BM25 only).
    pub embedder: Option<String>,
    /// Embedding width.
    pub dim: Option<usize>,
    /// When dense search switches from exact to HNSW, and the graph's parameters.
    #[serde(default)]
    pub ann: AnnConfig,
}

pub(super) struct Fields {
    pub(super) id: Field,
    pub(super) doc_id: Field,
    pub(super) body: Field,
    pub(super) text: Field,
    pub(super) title: Field,
    pub(super) source: Field,
    pub(super) updated_at: Field,
    pub(super) metadata: Field,
    pub(super) embedding: Field,
}

pub(super) fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let indexing = TextFieldIndexing::default()
        .set_tokenizer("en_stem")
        .set_index_option(IndexRecordOption::WithFreqsAndPositions);
    let f = Fields {
        id: b.add_text_field("id", STRING | STORED),
        doc_id: b.add_text_field("doc_id", STRING | STORED),
        body: b.add_text_field(
            "body",
            TextOptions::default().set_indexing_options(indexing),
        ),
        text: b.add_text_field("text", STORED),
        title: b.add_text_field("title", STORED),
        source: b.add_text_field("source", STRING | STORED),
        updated_at: b.add_text_field("updated_at", STORED),
        metadata: b.add_text_field("metadata", STORED),
        embedding: b.add_bytes_field("embedding", STORED),
    };
    (b.build(), f)
}

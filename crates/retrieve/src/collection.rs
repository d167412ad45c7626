//! Collections on disk: a tantivy index (BM25 over title + text, every field stored, the
//! bi-encoder embedding as stored bytes) in `DIR/index`, and `DIR/collection.json` naming the
//! embedder. Upserts replace documents with the same id; every call commits, and tantivy's
//! commit is durable (fsync), so an acknowledged write survives a kill -9.

use crate::bm25::search_field;
use crate::dense::DenseIndex;
use crate::hybrid::{fuse, HybridMode};
use crate::{Result, RetrieveError};
use crossrank_engine::BiEncoder;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tantivy::collector::TopDocs;
use tantivy::directory::MmapDirectory;
use tantivy::query::TermQuery;
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, STORED, STRING,
};
use tantivy::{doc, Index, IndexReader, ReloadPolicy, TantivyDocument, Term};

/// A document (or chunk) as given to `index`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
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
}

struct Fields {
    id: Field,
    doc_id: Field,
    body: Field,
    text: Field,
    title: Field,
    source: Field,
    updated_at: Field,
    metadata: Field,
    embedding: Field,
}

fn schema() -> (Schema, Fields) {
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

/// Which first stage to run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Retriever {
    /// BM25 on tantivy.
    Bm25,
    /// Exact cosine over the stored embeddings.
    Dense,
    /// BM25 and dense fused.
    Hybrid(HybridMode),
}

/// An open collection.
pub struct Collection {
    dir: PathBuf,
    index: Index,
    reader: IndexReader,
    f: Fields,
    manifest: Manifest,
    embedder: Option<BiEncoder>,
    dense: Option<DenseIndex>,
}

fn io(path: &Path, e: impl std::fmt::Display) -> RetrieveError {
    RetrieveError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

impl Collection {
    /// Opens `dir`, creating it if needed. `embedder` sets the bi-encoder of a new collection
    /// (or must match the one it was made with); `load_embedder` loads it for dense search and
    /// indexing.
    pub fn open(dir: &Path, embedder: Option<&Path>, load_embedder: bool) -> Result<Self> {
        let idx_dir = dir.join("index");
        std::fs::create_dir_all(&idx_dir).map_err(|e| io(&idx_dir, e))?;
        let mpath = dir.join("collection.json");
        let mut manifest: Manifest = match std::fs::read_to_string(&mpath) {
            Ok(t) => serde_json::from_str(&t).map_err(|e| io(&mpath, e))?,
            Err(_) => Manifest::default(),
        };
        if let Some(e) = embedder {
            let e = e
                .canonicalize()
                .map_err(|err| io(e, err))?
                .display()
                .to_string();
            match &manifest.embedder {
                Some(m) if m != &e => {
                    return Err(RetrieveError::Invalid(format!(
                        "collection {} was embedded with {m}, not {e}",
                        dir.display()
                    )))
                }
                _ => manifest.embedder = Some(e),
            }
        }
        let (schema, f) = schema();
        let mmap = MmapDirectory::open(&idx_dir).map_err(|e| io(&idx_dir, e))?;
        let index = Index::open_or_create(mmap, schema)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let embedder = match (&manifest.embedder, load_embedder) {
            (Some(e), true) => Some(BiEncoder::load(Path::new(e), None)?),
            _ => None,
        };
        if let Some(e) = &embedder {
            manifest.dim = Some(e.dim());
        }
        std::fs::write(
            &mpath,
            serde_json::to_string_pretty(&manifest).unwrap_or_default(),
        )
        .map_err(|e| io(&mpath, e))?;
        Ok(Collection {
            dir: dir.to_path_buf(),
            index,
            reader,
            f,
            manifest,
            embedder,
            dense: None,
        })
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Documents stored.
    pub fn len(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds or replaces documents and commits; returns how many were written.
    pub fn upsert(&mut self, docs: &[DocInput]) -> Result<usize> {
        for d in docs {
            if d.id.is_empty() {
                return Err(RetrieveError::Invalid("a document has an empty id".into()));
            }
            if let Some(u) = &d.updated_at {
                if parse_date(u).is_none() {
                    return Err(RetrieveError::Invalid(format!(
                        "document {}: updated_at {u:?} is not RFC 3339",
                        d.id
                    )));
                }
            }
        }
        let embeddings = match &self.embedder {
            Some(e) => {
                let texts: Vec<String> = docs
                    .iter()
                    .map(|d| body(d.title.as_deref(), &d.text))
                    .collect();
                Some(e.embed(&texts)?)
            }
            None if self.manifest.embedder.is_some() => {
                return Err(RetrieveError::Invalid(
                    "this collection has an embedder; open it with the embedder loaded".into(),
                ))
            }
            None => None,
        };
        let mut writer = self.index.writer_with_num_threads(1, 64_000_000)?;
        let f = &self.f;
        for (i, d) in docs.iter().enumerate() {
            writer.delete_term(Term::from_field_text(f.id, &d.id));
            let mut doc = doc!(
                f.id => d.id.as_str(),
                f.doc_id => d.doc_id.as_deref().unwrap_or(&d.id),
                f.body => body(d.title.as_deref(), &d.text),
                f.text => d.text.as_str(),
            );
            if let Some(t) = &d.title {
                doc.add_text(f.title, t);
            }
            if let Some(s) = &d.source {
                doc.add_text(f.source, s);
            }
            if let Some(u) = &d.updated_at {
                doc.add_text(f.updated_at, u);
            }
            if let Some(m) = &d.metadata {
                doc.add_text(f.metadata, m.to_string());
            }
            if let Some(e) = &embeddings {
                let bytes: Vec<u8> = e[i].iter().flat_map(|v| v.to_le_bytes()).collect();
                doc.add_bytes(f.embedding, &bytes);
            }
            writer.add_document(doc)?;
        }
        writer.commit()?;
        self.reader.reload()?;
        self.dense = None;
        Ok(docs.len())
    }

    /// Deletes documents by id and commits; returns how many existed.
    pub fn delete(&mut self, ids: &[String]) -> Result<usize> {
        let existed = ids
            .iter()
            .filter(|id| self.get(id).ok().flatten().is_some())
            .count();
        let mut writer: tantivy::IndexWriter = self.index.writer_with_num_threads(1, 64_000_000)?;
        for id in ids {
            writer.delete_term(Term::from_field_text(self.f.id, id));
        }
        writer.commit()?;
        self.reader.reload()?;
        self.dense = None;
        Ok(existed)
    }

    /// A stored document by id.
    pub fn get(&self, id: &str) -> Result<Option<StoredDoc>> {
        let searcher = self.reader.searcher();
        let q = TermQuery::new(
            Term::from_field_text(self.f.id, id),
            IndexRecordOption::Basic,
        );
        let top = searcher.search(&q, &TopDocs::with_limit(1))?;
        match top.first() {
            Some((_, addr)) => Ok(Some(self.stored(&searcher.doc(*addr)?))),
            None => Ok(None),
        }
    }

    fn stored(&self, d: &TantivyDocument) -> StoredDoc {
        let s = |f: Field| d.get_first(f).and_then(|v| v.as_str()).map(String::from);
        StoredDoc {
            id: s(self.f.id).unwrap_or_default(),
            doc_id: s(self.f.doc_id).unwrap_or_default(),
            text: s(self.f.text).unwrap_or_default(),
            title: s(self.f.title),
            source: s(self.f.source),
            updated_at: s(self.f.updated_at),
            metadata: s(self.f.metadata).and_then(|m| serde_json::from_str(&m).ok()),
        }
    }

    /// Loads every stored embedding into the in-memory dense index.
    fn dense_index(&mut self) -> Result<&DenseIndex> {
        if self.dense.is_none() {
            let dim = self
                .manifest
                .dim
                .ok_or_else(|| RetrieveError::Invalid("the collection has no embeddings".into()))?;
            let mut d = DenseIndex::new(dim);
            let searcher = self.reader.searcher();
            for (ord, seg) in searcher.segment_readers().iter().enumerate() {
                for doc in seg.doc_ids_alive() {
                    let td: TantivyDocument =
                        searcher.doc(tantivy::DocAddress::new(ord as u32, doc))?;
                    let id = td
                        .get_first(self.f.id)
                        .and_then(|v| v.as_str())
                        .unwrap_or_default()
                        .to_string();
                    if let Some(bytes) = td.get_first(self.f.embedding).and_then(|v| v.as_bytes()) {
                        let v: Vec<f32> = bytes
                            .chunks_exact(4)
                            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                            .collect();
                        if v.len() == dim {
                            d.push(id, &v);
                        }
                    }
                }
            }
            self.dense = Some(d);
        }
        Ok(self.dense.as_ref().unwrap_or_else(|| unreachable!()))
    }

    /// The first stage: the `k` best (id, score) for `query`.
    pub fn retrieve(
        &mut self,
        query: &str,
        retriever: Retriever,
        k: usize,
    ) -> Result<Vec<(String, f32)>> {
        let bm25 = |c: &Self, k| search_field(&c.index, &c.reader, c.f.id, c.f.body, query, k);
        match retriever {
            Retriever::Bm25 => bm25(self, k),
            Retriever::Dense => self.dense_search(query, k),
            Retriever::Hybrid(mode) => {
                let depth = k.max(100);
                let b = bm25(self, depth)?;
                let d = self.dense_search(query, depth)?;
                Ok(fuse(&b, &d, mode, k))
            }
        }
    }

    fn dense_search(&mut self, query: &str, k: usize) -> Result<Vec<(String, f32)>> {
        let q = match &self.embedder {
            Some(e) => e.embed(&[query])?.pop().unwrap_or_default(),
            None => {
                return Err(RetrieveError::Invalid(
                    "dense retrieval needs the collection's embedder".into(),
                ))
            }
        };
        Ok(self.dense_index()?.search(&q, k))
    }

    /// The collection directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn body(title: Option<&str>, text: &str) -> String {
    match title {
        Some(t) if !t.is_empty() => format!("{t} {text}"),
        _ => text.to_string(),
    }
}

/// Splits a text into chunks of about `tokens` words with `overlap` words shared, keeping the
/// parent id: chunk ids are `ID#0`, `ID#1`, ...
pub fn chunk(doc: &DocInput, tokens: usize, overlap: usize) -> Vec<DocInput> {
    let words: Vec<&str> = doc.text.split_whitespace().collect();
    if tokens == 0 || words.len() <= tokens {
        return vec![DocInput {
            doc_id: Some(doc.doc_id.clone().unwrap_or_else(|| doc.id.clone())),
            ..doc.clone()
        }];
    }
    let step = tokens.saturating_sub(overlap).max(1);
    let mut out = Vec::new();
    let mut start = 0;
    loop {
        let end = (start + tokens).min(words.len());
        out.push(DocInput {
            id: format!("{}#{}", doc.id, out.len()),
            text: words[start..end].join(" "),
            doc_id: Some(doc.doc_id.clone().unwrap_or_else(|| doc.id.clone())),
            ..doc.clone()
        });
        if end == words.len() {
            break;
        }
        start += step;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(id: &str, text: &str) -> DocInput {
        DocInput::new(id, text)
    }

    #[test]
    fn upsert_replace_delete_and_reopen() {
        let dir = std::env::temp_dir().join(format!("crossrank-coll-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let mut c = Collection::open(&dir, None, false).unwrap();
            c.upsert(&[
                d("a", "rust borrow checker"),
                d("b", "python garbage collector"),
            ])
            .unwrap();
            c.upsert(&[DocInput {
                source: Some("blog".into()),
                updated_at: Some("2026-11-01T00:00:00Z".into()),
                ..d("a", "rust ownership and lifetimes")
            }])
            .unwrap();
            assert_eq!(c.len(), 2);
            let bad = c
                .upsert(&[DocInput {
                    updated_at: Some("yesterday".into()),
                    ..d("c", "x")
                }])
                .unwrap_err();
            assert!(bad.to_string().contains("RFC 3339"));
        }
        let mut c = Collection::open(&dir, None, false).unwrap();
        assert_eq!(c.len(), 2);
        let a = c.get("a").unwrap().unwrap();
        assert_eq!(a.text, "rust ownership and lifetimes");
        assert_eq!(a.source.as_deref(), Some("blog"));
        assert!(
            (a.age_days(parse_date("2026-11-11T00:00:00Z").unwrap())
                .unwrap()
                - 10.0)
                .abs()
                < 1e-9
        );
        assert_eq!(
            c.retrieve("lifetimes", Retriever::Bm25, 5).unwrap()[0].0,
            "a"
        );
        assert_eq!(c.delete(&["b".into(), "zzz".into()]).unwrap(), 1);
        assert_eq!(c.len(), 1);
        assert!(c.retrieve("x", Retriever::Dense, 5).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn chunks_overlap_and_keep_the_parent() {
        let doc = d("p", "w0 w1 w2 w3 w4 w5 w6 w7 w8 w9");
        let c = chunk(&doc, 4, 1);
        assert_eq!(
            c.iter().map(|x| x.text.as_str()).collect::<Vec<_>>(),
            ["w0 w1 w2 w3", "w3 w4 w5 w6", "w6 w7 w8 w9"]
        );
        assert!(c.iter().all(|x| x.doc_id.as_deref() == Some("p")));
        assert_eq!(c[2].id, "p#2");
        assert_eq!(chunk(&doc, 20, 0)[0].id, "p");
    }
}

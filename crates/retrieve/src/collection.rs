//! Collections on disk: a tantivy index (BM25 over title + text, every field stored, the
//! bi-encoder embedding as stored bytes) in `DIR/index`, and `DIR/collection.json` naming the
//! embedder. Upserts replace documents with the same id; every call commits, and tantivy's
//! commit is durable (fsync), so an acknowledged write survives a kill -9.
//!
//! Dense search runs on a [`DenseIndex`] (exact below `ann.min_vectors` documents, HNSW
//! above) kept in memory and saved in `DIR/dense` stamped with the tantivy opstamp it reflects.
//! The tantivy index stays the source of truth: a missing or stale `DIR/dense` (a kill -9
//! before it was saved) is rebuilt from the stored embeddings on the next dense search.

use crate::bm25::search_field;
use crate::dense::{AnnConfig, DenseIndex};
use crate::hybrid::{fuse, HybridMode};
use crate::{Result, RetrieveError};
use crossrank_engine::{BiEncoder, PairTokenizer};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
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
    /// When dense search switches from exact to HNSW, and the graph's parameters.
    #[serde(default)]
    pub ann: AnnConfig,
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
    /// Cosine over the stored embeddings (exact, or HNSW for large collections).
    Dense,
    /// BM25 and dense fused.
    Hybrid(HybridMode),
}

/// What [`Collection::dense_info`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DenseInfo {
    /// Live vectors.
    pub vectors: usize,
    /// The index searches use: "exact", "hnsw" or "int8-scan".
    pub index: &'static str,
    /// Whether `DIR/dense` holds exactly the in-memory index (false after a rebuild or a write
    /// not yet flushed).
    pub saved: bool,
}

/// An open collection.
pub struct Collection {
    dir: PathBuf,
    index: Index,
    reader: IndexReader,
    f: Fields,
    manifest: Manifest,
    embedder: Option<Arc<BiEncoder>>,
    dense: Option<DenseIndex>,
    /// The in-memory dense index has changes not yet in `DIR/dense`.
    dense_dirty: bool,
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
        let own = crate::embedders::Embedders::default();
        Self::open_shared(dir, embedder, load_embedder.then_some(&own))
    }

    /// [`Collection::open`] taking its bi-encoder from `shared` (None: do not load one), so
    /// that collections with the same embedder share one model.
    pub fn open_shared(
        dir: &Path,
        embedder: Option<&Path>,
        shared: Option<&crate::embedders::Embedders>,
    ) -> Result<Self> {
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
        let embedder = match (&manifest.embedder, shared) {
            (Some(e), Some(cache)) => Some(cache.get(Path::new(e))?),
            _ => None,
        };
        if let Some(e) = &embedder {
            manifest.dim = Some(e.dim());
        }
        let c = Collection {
            dir: dir.to_path_buf(),
            index,
            reader,
            f,
            manifest,
            embedder,
            dense: None,
            dense_dirty: false,
        };
        c.save_manifest()?;
        Ok(c)
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

    /// Adds or replaces documents and commits; returns how many were written. Documents are
    /// embedded with the collection's bi-encoder, if it has one.
    pub fn upsert(&mut self, docs: &[DocInput]) -> Result<usize> {
        self.validate(docs)?;
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
        self.write(docs, embeddings)
    }

    /// Adds or replaces documents with embeddings computed elsewhere (one per document, all of
    /// one width); a collection without a bi-encoder then searches them with
    /// [`Collection::search_vector`].
    pub fn upsert_embedded(
        &mut self,
        docs: &[DocInput],
        embeddings: Vec<Vec<f32>>,
    ) -> Result<usize> {
        self.validate(docs)?;
        if embeddings.len() != docs.len() {
            return Err(RetrieveError::Invalid(format!(
                "{} documents but {} embeddings",
                docs.len(),
                embeddings.len()
            )));
        }
        let dim = self.manifest.dim.or(embeddings.first().map(Vec::len));
        if let (Some(dim), Some((d, e))) = (
            dim,
            docs.iter()
                .zip(&embeddings)
                .find(|(_, e)| Some(e.len()) != dim),
        ) {
            return Err(RetrieveError::Invalid(format!(
                "document {}: embedding has {} values, the collection holds {dim}-d vectors",
                d.id,
                e.len()
            )));
        }
        if self.manifest.dim.is_none() && dim.is_some() {
            self.manifest.dim = dim;
            self.save_manifest()?;
        }
        self.write(docs, Some(embeddings))
    }

    fn save_manifest(&self) -> Result<()> {
        let mpath = self.dir.join("collection.json");
        std::fs::write(
            &mpath,
            serde_json::to_string_pretty(&self.manifest).unwrap_or_default(),
        )
        .map_err(|e| io(&mpath, e))
    }

    fn validate(&self, docs: &[DocInput]) -> Result<()> {
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
        Ok(())
    }

    fn write(&mut self, docs: &[DocInput], embeddings: Option<Vec<Vec<f32>>>) -> Result<usize> {
        // Load the dense index first, so that this write is applied to it in place.
        if self.manifest.dim.is_some() {
            self.dense_index()?;
        }
        let writer = self.index.writer_with_num_threads(1, 64_000_000)?;
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
        self.commit(writer)?;
        if let (Some(dense), Some(e)) = (&mut self.dense, &embeddings) {
            // Later duplicates of an id win, as in the tantivy index.
            dense.upsert(
                docs.iter()
                    .map(|d| d.id.as_str())
                    .zip(e.iter().map(|v| &v[..])),
            )?;
            self.dense_dirty = true;
        }
        Ok(docs.len())
    }

    /// Deletes documents by id and commits; returns how many existed.
    pub fn delete(&mut self, ids: &[String]) -> Result<usize> {
        let existed = ids
            .iter()
            .filter(|id| self.get(id).ok().flatten().is_some())
            .count();
        let writer: tantivy::IndexWriter = self.index.writer_with_num_threads(1, 64_000_000)?;
        for id in ids {
            writer.delete_term(Term::from_field_text(self.f.id, id));
        }
        self.commit(writer)?;
        if let Some(dense) = &mut self.dense {
            for id in ids {
                dense.remove(id)?;
            }
            self.dense_dirty = true;
        }
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

    /// Commits (durably), lets the merge policy finish so that many small writes do not leave
    /// many segments, and makes the commit visible to searches.
    fn commit(&self, mut writer: tantivy::IndexWriter) -> Result<()> {
        writer.commit()?;
        writer.wait_merging_threads()?;
        self.reader.reload()?;
        Ok(())
    }

    fn opstamp(&self) -> Result<u64> {
        Ok(self.index.load_metas()?.opstamp)
    }

    /// The dense index: in memory, else `DIR/dense` if it matches the tantivy index, else
    /// rebuilt from the stored embeddings (and saved at the next [`Collection::flush`]).
    fn dense_index(&mut self) -> Result<&DenseIndex> {
        if self.dense.is_none() {
            let dim = self
                .manifest
                .dim
                .ok_or_else(|| RetrieveError::Invalid("the collection has no embeddings".into()))?;
            let cfg = self.manifest.ann.clone();
            let stamp = self.opstamp()?;
            let saved = DenseIndex::load(&self.dir.join("dense"), dim, cfg.clone(), stamp)?;
            self.dense_dirty = saved.is_none();
            let d = match saved {
                Some(d) => d,
                None => self.rebuild_dense(dim, cfg)?,
            };
            self.dense = Some(d);
        }
        Ok(self.dense.as_ref().unwrap_or_else(|| unreachable!()))
    }

    fn rebuild_dense(&self, dim: usize, cfg: AnnConfig) -> Result<DenseIndex> {
        let mut items: Vec<(String, Vec<f32>)> = Vec::new();
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
                        items.push((id, v));
                    }
                }
            }
        }
        let mut d = DenseIndex::new(dim, cfg);
        d.upsert(items.iter().map(|(id, v)| (id.as_str(), &v[..])))?;
        Ok(d)
    }

    /// Saves the dense index to `DIR/dense` if it changed (also done when the collection is
    /// dropped). Not needed for durability: a stale or missing copy is rebuilt.
    pub fn flush(&mut self) -> Result<()> {
        if let (true, Some(d)) = (self.dense_dirty, &self.dense) {
            d.save(&self.dir.join("dense"), self.opstamp()?)?;
            self.dense_dirty = false;
        }
        Ok(())
    }

    /// The state of the dense index (loads it).
    pub fn dense_info(&mut self) -> Result<DenseInfo> {
        let d = self.dense_index()?;
        let (vectors, index) = (d.len(), d.mode());
        Ok(DenseInfo {
            vectors,
            index,
            saved: !self.dense_dirty,
        })
    }

    /// The `k` nearest documents to an embedding computed elsewhere: (id, inner product).
    pub fn search_vector(&mut self, q: &[f32], k: usize) -> Result<Vec<(String, f32)>> {
        Ok(self.dense_index()?.search(q, k)?)
    }

    /// Exact top `k` for an embedding (a full scan; for measuring the graph's recall).
    pub fn search_vector_exact(&mut self, q: &[f32], k: usize) -> Result<Vec<(String, f32)>> {
        Ok(self.dense_index()?.exact(q, k)?)
    }

    /// The first stage: the `k` best (id, score) for `query`.
    pub fn retrieve(
        &mut self,
        query: &str,
        retriever: Retriever,
        k: usize,
    ) -> Result<Vec<(String, f32)>> {
        // Never ask an index for more hits than there are documents: a request's `k` is not
        // a size to allocate.
        let k = k
            .min(usize::try_from(self.len()).unwrap_or(usize::MAX))
            .max(1);
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
        self.search_vector(&q, k)
    }

    /// How `chunk` should count for this collection: the bi-encoder's tokens when it is
    /// loaded (chunks then fit its `max_seq_length`), else words.
    pub fn chunk_unit(&self) -> ChunkUnit<'_> {
        match &self.embedder {
            Some(e) => ChunkUnit::Tokens(e.tokenizer()),
            None => ChunkUnit::Words,
        }
    }

    /// Every document split by [`chunk`] counting in [`Collection::chunk_unit`].
    pub fn chunk_all(
        &self,
        docs: &[DocInput],
        size: usize,
        overlap: usize,
    ) -> Result<Vec<DocInput>> {
        let mut out = Vec::with_capacity(docs.len());
        for d in docs {
            out.extend(chunk(d, size, overlap, self.chunk_unit())?);
        }
        Ok(out)
    }

    /// The collection directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Collection {
    fn drop(&mut self) {
        // Best effort: a failed save only means a rebuild on the next open.
        let _ = self.flush();
    }
}

/// The text that is indexed, embedded and reranked: the title (if any), a space, the text.
pub(crate) fn body(title: Option<&str>, text: &str) -> String {
    match title {
        Some(t) if !t.is_empty() => format!("{t} {text}"),
        _ => text.to_string(),
    }
}

/// What `chunk` counts.
#[derive(Clone, Copy)]
pub enum ChunkUnit<'a> {
    /// Whitespace-separated words.
    Words,
    /// Tokens of a model's tokenizer (without special tokens).
    Tokens(&'a PairTokenizer),
}

/// Splits a text into chunks of at most `size` units (words, or model tokens) with about
/// `overlap` units shared by neighbours, never splitting a word (a single word longer than
/// `size` tokens becomes a chunk of its own). Chunks are slices of the original text and keep
/// the parent id: chunk ids are `ID#0`, `ID#1`, ...; a text that fits stays one document.
pub fn chunk(
    doc: &DocInput,
    size: usize,
    overlap: usize,
    unit: ChunkUnit,
) -> Result<Vec<DocInput>> {
    let parent = doc.doc_id.clone().unwrap_or_else(|| doc.id.clone());
    // Byte spans of the words.
    let mut words: Vec<(usize, usize)> = Vec::new();
    let mut start = None;
    for (i, ch) in doc.text.char_indices() {
        match (ch.is_whitespace(), start) {
            (true, Some(s)) => {
                words.push((s, i));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        words.push((s, doc.text.len()));
    }
    let cost: Vec<usize> = match unit {
        ChunkUnit::Words => vec![1; words.len()],
        ChunkUnit::Tokens(t) => {
            let mut cost = vec![0usize; words.len()];
            let mut w = 0;
            for (s, _) in t.token_offsets(&doc.text)? {
                while w + 1 < words.len() && s >= words[w].1 {
                    w += 1;
                }
                if let Some(c) = cost.get_mut(w) {
                    *c += 1;
                }
            }
            cost
        }
    };
    if size == 0 || cost.iter().sum::<usize>() <= size {
        return Ok(vec![DocInput {
            doc_id: Some(parent),
            ..doc.clone()
        }]);
    }
    let mut out = Vec::new();
    let mut first = 0;
    loop {
        let mut end = first;
        let mut used = 0;
        while end < words.len() && (end == first || used + cost[end] <= size) {
            used += cost[end];
            end += 1;
        }
        out.push(DocInput {
            id: format!("{}#{}", doc.id, out.len()),
            text: doc.text[words[first].0..words[end - 1].1].to_string(),
            doc_id: Some(parent.clone()),
            ..doc.clone()
        });
        if end == words.len() {
            break;
        }
        // Step back over at most `overlap` units, always moving forward.
        let mut next = end;
        let mut shared = 0;
        while next > first + 1 && shared + cost[next - 1] <= overlap {
            shared += cost[next - 1];
            next -= 1;
        }
        first = next;
    }
    Ok(out)
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

    fn vectors(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
        crate::testing::vectors(n, dim, 10, seed)
    }

    #[test]
    fn dense_graph_is_saved_reloaded_and_rebuilt_after_a_crash() {
        let dir = std::env::temp_dir().join(format!("crossrank-coll-ann-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // A collection.json may set the threshold; the other fields keep their defaults.
        std::fs::write(
            dir.join("collection.json"),
            r#"{"ann": {"min_vectors": 500}}"#,
        )
        .unwrap();
        let vs = vectors(1300, 16, 11);
        let docs: Vec<DocInput> = (0..1200)
            .map(|i| d(&format!("v{i}"), &format!("text {i}")))
            .collect();
        let queries = vectors(10, 16, 99);
        let before: Vec<Vec<(String, f32)>>;
        {
            let mut c = Collection::open(&dir, None, false).unwrap();
            assert_eq!(c.manifest().ann.min_vectors, 500);
            assert_eq!(c.manifest().ann.connectivity, 16);
            for (docs, vs) in docs.chunks(300).zip(vs.chunks(300)) {
                c.upsert_embedded(docs, vs.to_vec()).unwrap();
            }
            let bad = c
                .upsert_embedded(&[d("w", "x")], vec![vec![0.5; 8]])
                .unwrap_err();
            assert!(bad.to_string().contains("holds 16-d vectors"), "{bad}");
            let info = c.dense_info().unwrap();
            assert_eq!(
                (info.vectors, info.index, info.saved),
                (1200, "hnsw", false)
            );
            let mut found = 0;
            for q in &queries {
                let got = c.search_vector(q, 10).unwrap();
                let want = c.search_vector_exact(q, 10).unwrap();
                found += want
                    .iter()
                    .filter(|w| got.iter().any(|g| g.0 == w.0))
                    .count();
            }
            assert!(found >= 95, "recall@10 {found}/100");
            before = queries
                .iter()
                .map(|q| c.search_vector(q, 10).unwrap())
                .collect();
        } // dropped: the graph is saved
        assert!(dir.join("dense/graph.usearch").exists());
        {
            let mut c = Collection::open(&dir, None, false).unwrap();
            let info = c.dense_info().unwrap();
            assert_eq!((info.vectors, info.index, info.saved), (1200, "hnsw", true));
            let again: Vec<Vec<(String, f32)>> = queries
                .iter()
                .map(|q| c.search_vector(q, 10).unwrap())
                .collect();
            assert_eq!(again, before);
            // A write, then a crash before the dense index is saved.
            c.upsert_embedded(&[d("new", "n")], vec![queries[0].clone()])
                .unwrap();
            c.delete(&[before[1][0].0.clone()]).unwrap();
            std::mem::forget(c);
        }
        let mut c = Collection::open(&dir, None, false).unwrap();
        let info = c.dense_info().unwrap();
        assert_eq!(
            (info.vectors, info.index, info.saved),
            (1200, "hnsw", false),
            "rebuilt"
        );
        assert_eq!(c.search_vector(&queries[0], 1).unwrap()[0].0, "new");
        assert!(c
            .search_vector(&queries[1], 10)
            .unwrap()
            .iter()
            .all(|h| h.0 != before[1][0].0));
        c.flush().unwrap();
        assert!(c.dense_info().unwrap().saved);
        drop(c);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn chunks_count_model_tokens_without_splitting_words() {
        let tok = PairTokenizer::from_file(
            Path::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../models/minilm-l6-rerank/tokenizer.json"
            )),
            512,
        )
        .unwrap();
        let text = "Tokenization of unbelievably hyphenated-words, e.g. electroencephalography, \
                    needs care; short words are cheap.";
        let doc = d("t", text);
        let total = tok.token_offsets(text).unwrap().len();
        let words = text.split_whitespace().count();
        assert!(total > words + 5, "{total} tokens for {words} words");
        let chunks = chunk(&doc, 8, 2, ChunkUnit::Tokens(&tok)).unwrap();
        let mut prev_end = 0;
        for (i, c) in chunks.iter().enumerate() {
            let n = tok.token_offsets(&c.text).unwrap().len();
            let single_word = !c.text.contains(char::is_whitespace);
            assert!(n <= 8 || single_word, "{:?} has {n} tokens", c.text);
            // A slice of the text at word boundaries, overlapping or touching the previous one.
            let start = text.find(&c.text).unwrap();
            let end = start + c.text.len();
            let boundary = |at: usize| {
                at == 0
                    || at == text.len()
                    || text[at..].starts_with(' ')
                    || text[..at].ends_with(' ')
            };
            assert!(
                boundary(start) && boundary(end),
                "{:?} splits a word",
                c.text
            );
            assert!(i == 0 || start <= prev_end + 1, "gap before {:?}", c.text);
            prev_end = end;
        }
        assert!(chunks[0].text.starts_with("Tokenization"));
        assert_eq!(prev_end, text.len());
        // Counting words instead gives fewer, longer chunks.
        assert!(chunk(&doc, 8, 2, ChunkUnit::Words).unwrap().len() < chunks.len());
    }

    #[test]
    fn chunks_overlap_and_keep_the_parent() {
        let doc = d("p", "w0 w1 w2 w3 w4 w5 w6 w7 w8 w9");
        let c = chunk(&doc, 4, 1, ChunkUnit::Words).unwrap();
        assert_eq!(
            c.iter().map(|x| x.text.as_str()).collect::<Vec<_>>(),
            ["w0 w1 w2 w3", "w3 w4 w5 w6", "w6 w7 w8 w9"]
        );
        assert!(c.iter().all(|x| x.doc_id.as_deref() == Some("p")));
        assert_eq!(c[2].id, "p#2");
        assert_eq!(chunk(&doc, 20, 0, ChunkUnit::Words).unwrap()[0].id, "p");
        // Original spacing is kept inside a chunk.
        let spaced = d("s", "a  b\nc d");
        let c = chunk(&spaced, 3, 0, ChunkUnit::Words).unwrap();
        assert_eq!(c[0].text, "a  b\nc");
        assert_eq!(c[1].text, "d");
    }
}

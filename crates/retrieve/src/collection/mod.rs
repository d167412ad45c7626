//! Collections on disk: a tantivy index (BM25 over title + text, every field stored, the
//! bi-encoder embedding as stored bytes) in `DIR/index`, and `DIR/collection.json` naming the
//! embedder. Upserts replace documents with the same id; every call commits, and tantivy's
//! commit is durable (fsync), so an acknowledged write survives a kill -9.
//!
//! Dense search runs on a [`DenseIndex`] (exact below `ann.min_vectors` documents, HNSW
//! above) kept in memory and saved in `DIR/dense` stamped with the tantivy opstamp it reflects.
//! The tantivy index stays the source of truth: a missing or stale `DIR/dense` (a kill -9
//! before it was saved) is rebuilt from the stored embeddings on the next dense search.

use crate::dense::{AnnConfig, DenseIndex, DenseMode};
use crate::{Result, RetrieveError};

mod chunk;
mod docs;
mod retrieval;
#[cfg(test)]
mod tests;

pub use chunk::{chunk, chunk_all, ChunkUnit};
use crossrank_engine::vectors::{f32s_from_le, f32s_to_le};
use crossrank_engine::BiEncoder;
pub use docs::{parse_date, validate, DocInput, Manifest, StoredDoc};
use docs::{schema, Fields};
pub use retrieval::{Hit, Retriever};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tantivy::collector::TopDocs;
use tantivy::directory::MmapDirectory;
use tantivy::query::TermQuery;
use tantivy::schema::{Field, IndexRecordOption, Value};
use tantivy::{doc, Index, IndexReader, ReloadPolicy, TantivyDocument, Term};

/// The file that marks a directory as a collection; the rest of the layout is private too.
const MANIFEST: &str = "collection.json";

/// Checks a collection name: 1-64 ASCII letters, digits, '-' or '_' (safe as a directory
/// name and in a URL path).
pub fn valid_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        let shown: String = name.chars().take(80).collect();
        return Err(RetrieveError::Invalid(format!(
            "collection name {shown:?}: use 1-64 letters, digits, '-' or '_'"
        )));
    }
    Ok(())
}

/// What [`Collection::dense_info`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DenseInfo {
    /// Live vectors.
    pub vectors: usize,
    /// How searches run ("exact", "hnsw" or "int8-scan" in JSON).
    pub index: DenseMode,
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

/// Writes `DIR/collection.json`.
fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<()> {
    let mpath = dir.join(MANIFEST);
    std::fs::write(
        &mpath,
        serde_json::to_string_pretty(manifest).unwrap_or_default(),
    )
    .map_err(|e| io(&mpath, e))
}

fn io(path: &Path, e: impl std::fmt::Display) -> RetrieveError {
    RetrieveError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

impl Collection {
    /// Whether `dir` holds a collection.
    pub fn exists(dir: &Path) -> bool {
        dir.join(MANIFEST).is_file()
    }

    /// Makes `dir` (created if missing) a new, empty collection with these settings; fails if
    /// it already holds one. [`Collection::open`] it afterwards.
    pub fn init(dir: &Path, manifest: &Manifest) -> Result<()> {
        if Self::exists(dir) {
            return Err(RetrieveError::Invalid(format!(
                "{} already holds a collection",
                dir.display()
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        write_manifest(dir, manifest)
    }

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
        let mpath = dir.join(MANIFEST);
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
        validate(docs)?;
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
        validate(docs)?;
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
        write_manifest(&self.dir, &self.manifest)
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
                let bytes = f32s_to_le(&e[i]);
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
                    let v = f32s_from_le(bytes);
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
        chunk_all(docs, size, overlap, self.chunk_unit())
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

//! Where collections live: the storage seam. A [`CollectionStore`] owns its collections (their
//! registry, names, creation limit, layout and save policy); callers upload, delete and run the
//! first stage by collection name and never see how a collection is kept. [`DirStore`] keeps
//! each collection in a directory (tantivy + the dense index); a database store implements the
//! same trait.
//!
//! Every method blocks (disk, embedding); async callers run them on a blocking thread.

use crate::collection::DocInput;
use crate::pipeline::{Candidates, SearchRequest};
use crate::Result;

mod dir;
#[cfg(feature = "postgres")]
pub mod postgres;

pub use dir::DirStore;
#[cfg(feature = "postgres")]
pub use postgres::{PgConfig, PgStore, Scan};

/// What an upload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upserted {
    /// Documents (chunks) written.
    pub indexed: usize,
    /// Documents in the collection afterwards.
    pub count: u64,
}

/// Counts for metrics and `/info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    /// Collections open in this process.
    pub open: usize,
    /// Distinct bi-encoders loaded.
    pub embedders_loaded: usize,
}

/// Collections by name.
pub trait CollectionStore: Send + Sync {
    /// Adds or replaces documents of collection `name`, creating it on first upload (within the
    /// store's limit). With `chunk = Some((tokens, overlap))` documents are split first; at most
    /// `max_documents` are written, counted after chunking. Acknowledged writes are durable.
    fn upsert(
        &self,
        name: &str,
        docs: &[DocInput],
        chunk: Option<(usize, usize)>,
        max_documents: usize,
    ) -> Result<Upserted>;
    /// Deletes document `id`; the documents left, or None when there was no such document.
    fn delete(&self, name: &str, id: &str) -> Result<Option<u64>>;
    /// The first stage of `req` over collection `name` (see [`crate::pipeline::first_stage`]); whatever the
    /// store locks, it holds only for this call, so the reranking that follows runs unlocked.
    fn first_stage(&self, name: &str, req: &SearchRequest) -> Result<Candidates>;
    /// Saves what is pending (changed dense indexes) of every open collection; with `wait`,
    /// waits for busy collections, else skips them until the next call.
    fn flush(&self, wait: bool);
    /// Counts for metrics.
    fn stats(&self) -> StoreStats;
    /// Where the collections are, for `/info` and logs (never a password).
    fn location(&self) -> String;
}

//! [`DirStore`]: collections in subdirectories of one root directory.

use super::{CollectionStore, StoreStats, Upserted};
use crate::collection::{valid_name, Collection, DocInput};
use crate::embedders::Embedders;
use crate::once_map::OnceMap;
use crate::pipeline::{first_stage, Candidates, SearchRequest};
use crate::{Result, RetrieveError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

type Shared = Arc<Mutex<Collection>>;

/// Collections in subdirectories of one root directory, opened on first use and kept open,
/// sharing one bi-encoder per distinct embedder.
pub struct DirStore {
    root: PathBuf,
    /// Set by [`DirStore::single`]: the directory of the one collection served, and its name.
    single: Option<(PathBuf, String)>,
    /// Whether opening a collection loads its bi-encoder (needed for dense search and writes).
    load_embedders: bool,
    embedder: Option<PathBuf>,
    max_collections: usize,
    embedders: Embedders,
    opened: OnceMap<String, Shared>,
    /// Held while a new collection is counted and created, so two creations cannot both pass
    /// the `max_collections` check.
    creating: Mutex<()>,
}

impl DirStore {
    /// A store under `root`; new collections use `embedder` (none: BM25 only) and at most
    /// `max_collections` collections may exist under `root`.
    pub fn new(root: &Path, embedder: Option<&Path>, max_collections: usize) -> DirStore {
        DirStore {
            root: root.to_path_buf(),
            single: None,
            load_embedders: true,
            embedder: embedder.map(Path::to_path_buf),
            max_collections,
            embedders: Embedders::default(),
            opened: OnceMap::default(),
            creating: Mutex::new(()),
        }
    }

    /// A store of the one collection in directory `dir` (the CLI's `--collection DIR`, any
    /// directory name), which callers name by the string this returns. `load_embedder`: load
    /// the collection's bi-encoder (dense and hybrid search, writes); a BM25 search need not.
    pub fn single(dir: &Path, embedder: Option<&Path>, load_embedder: bool) -> (DirStore, String) {
        let name = dir.display().to_string();
        let store = DirStore {
            single: Some((dir.to_path_buf(), name.clone())),
            load_embedders: load_embedder,
            ..DirStore::new(dir, embedder, usize::MAX)
        };
        (store, name)
    }

    /// The open collection `name`; `create` makes it if missing. Concurrent first calls for one
    /// name open it once; a failed open leaves nothing behind.
    fn collection(&self, name: &str, create: bool) -> Result<Shared> {
        match &self.single {
            Some((_, only)) if only != name => {
                return Err(RetrieveError::NotFound(format!(
                    "this store holds only the collection {only}"
                )))
            }
            Some(_) => {}
            None => valid_name(name)?,
        }
        self.opened
            .get_or_try_init(&name.to_string(), || self.open(name, create))
    }

    fn open(&self, name: &str, create: bool) -> Result<Shared> {
        let dir = match &self.single {
            Some((d, _)) => d.clone(),
            None => self.root.join(name),
        };
        let exists = Collection::exists(&dir);
        if !exists && !create {
            return Err(RetrieveError::NotFound(match &self.single {
                Some((d, _)) => format!(
                    "{} is not a collection (run crossrank index first)",
                    d.display()
                ),
                None => format!("no collection {name:?}"),
            }));
        }
        // A new collection under the root counts against `max_collections`; the lock is held
        // until it exists, so two creations cannot both pass the check.
        let _creating = if exists || self.single.is_some() {
            None
        } else {
            let guard = self.creating.lock().unwrap_or_else(|p| p.into_inner());
            let have = std::fs::read_dir(&self.root)
                .map(|rd| {
                    rd.filter_map(|e| e.ok())
                        .filter(|e| Collection::exists(&e.path()))
                        .count()
                })
                .unwrap_or(0);
            if have >= self.max_collections {
                return Err(RetrieveError::Limit(format!(
                    "this server holds {have} collections, the limit (max_collections) is {}; \
                     collection {name:?} was not created",
                    self.max_collections
                )));
            }
            Some(guard)
        };
        let embedders = self.load_embedders.then_some(&self.embedders);
        let c = Collection::open_shared(&dir, self.embedder.as_deref(), embedders)?;
        Ok(Arc::new(Mutex::new(c)))
    }

    fn open_ones(&self) -> Vec<(String, Shared)> {
        self.opened.made()
    }
}

fn lock(c: &Shared) -> std::sync::MutexGuard<'_, Collection> {
    c.lock().unwrap_or_else(|p| p.into_inner())
}

impl CollectionStore for DirStore {
    fn upsert(
        &self,
        name: &str,
        docs: &[DocInput],
        chunk: Option<(usize, usize)>,
        max_documents: usize,
    ) -> Result<Upserted> {
        let c = self.collection(name, true)?;
        let mut c = lock(&c);
        let chunked;
        let docs = match chunk {
            Some((tokens, overlap)) => {
                chunked = c.chunk_all(docs, tokens, overlap)?;
                &chunked[..]
            }
            None => docs,
        };
        if docs.len() > max_documents {
            return Err(RetrieveError::TooLarge(format!(
                "the upload makes {} chunks; the limit (max_upload_documents) is {max_documents}",
                docs.len()
            )));
        }
        let indexed = c.upsert(docs)?;
        Ok(Upserted {
            indexed,
            count: c.len(),
        })
    }

    fn delete(&self, name: &str, id: &str) -> Result<Option<u64>> {
        let c = self.collection(name, false)?;
        let mut c = lock(&c);
        let n = c.delete(&[id.to_string()])?;
        Ok((n > 0).then(|| c.len()))
    }

    fn first_stage(&self, name: &str, req: &SearchRequest) -> Result<Candidates> {
        let c = self.collection(name, false)?;
        let mut c = lock(&c);
        first_stage(&mut c, req)
    }

    fn flush(&self, wait: bool) {
        for (name, c) in self.open_ones() {
            let guard = if wait {
                Some(lock(&c))
            } else {
                c.try_lock().ok()
            };
            if let Some(mut c) = guard {
                if let Err(e) = c.flush() {
                    eprintln!("crossrank: saving the dense index of collection {name}: {e}");
                }
            }
        }
    }

    fn location(&self) -> String {
        match &self.single {
            Some((d, _)) => d.display().to_string(),
            None => self.root.display().to_string(),
        }
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            open: self.open_ones().len(),
            embedders_loaded: self.embedders.loaded(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("crossrank-store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn docs(n: usize) -> Vec<DocInput> {
        (0..n)
            .map(|i| {
                DocInput::new(
                    format!("d{i}"),
                    format!("river number {i} flows to the sea"),
                )
            })
            .collect()
    }

    #[test]
    fn names_limits_uploads_deletes_and_searches_by_name() {
        let dir = root("basic");
        let store = DirStore::new(&dir, None, 2);
        assert!(matches!(
            store.upsert("bad name", &docs(1), None, 10),
            Err(RetrieveError::Invalid(_))
        ));
        let up = store.upsert("a", &docs(3), None, 10).unwrap();
        assert_eq!(
            up,
            Upserted {
                indexed: 3,
                count: 3
            }
        );
        assert!(matches!(
            store.upsert("b", &docs(11), None, 10),
            Err(RetrieveError::TooLarge(_))
        ));
        store.upsert("b", &docs(1), None, 10).unwrap();
        let e = store.upsert("c", &docs(1), None, 10).unwrap_err();
        assert!(
            matches!(&e, RetrieveError::Limit(m) if m.contains("max_collections")),
            "{e}"
        );
        assert!(matches!(
            store.first_stage("nope", &SearchRequest::default()),
            Err(RetrieveError::NotFound(_))
        ));
        assert_eq!(store.delete("a", "d1").unwrap(), Some(2));
        assert_eq!(store.delete("a", "d1").unwrap(), None);
        let req = SearchRequest {
            query: "river number 2".into(),
            retriever: crate::pipeline::RetrieverKind::Bm25,
            ..Default::default()
        };
        let got = store.first_stage("a", &req).unwrap();
        assert_eq!(got.texts().len(), 2);
        assert_eq!(store.stats().open, 2);
        store.flush(true);
        // A second store on the same root sees what the first acknowledged.
        let again = DirStore::new(&dir, None, 2);
        assert_eq!(again.delete("a", "d0").unwrap(), Some(1));
    }

    #[test]
    fn concurrent_first_opens_share_one_collection() {
        let dir = root("concurrent");
        let store = Arc::new(DirStore::new(&dir, None, 4));
        store.upsert("x", &docs(1), None, 10).unwrap();
        let fresh = Arc::new(DirStore::new(&dir, None, 4));
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let s = fresh.clone();
                std::thread::spawn(move || {
                    s.upsert("x", &[DocInput::new(format!("t{i}"), "text")], None, 10)
                        .unwrap()
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(fresh.stats().open, 1);
        assert_eq!(fresh.delete("x", "d0").unwrap(), Some(4));
    }
}

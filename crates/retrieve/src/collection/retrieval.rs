//! A collection's first stage: BM25, dense (exact or approximate) and hybrid retrieval, with
//! the stored documents BM25 read on the way.

use super::{Collection, StoredDoc};
use crate::bm25::search_docs;
use crate::hybrid::{fuse, HybridMode};
use crate::{Result, RetrieveError};

/// One first-stage hit: the id, the retriever's score, and the stored document when the
/// retriever read it anyway (BM25), so that it is not looked up a second time.
#[derive(Debug, Clone)]
pub struct Hit {
    /// Document id.
    pub id: String,
    /// The first stage's score (BM25, cosine or the fused score).
    pub score: f32,
    /// The stored document, if already read.
    pub doc: Option<StoredDoc>,
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

impl Collection {
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
        Ok(self
            .retrieve_hits(query, retriever, k)?
            .into_iter()
            .map(|h| (h.id, h.score))
            .collect())
    }

    /// Like [`Collection::retrieve`], with the stored document of each BM25 hit, read in the
    /// same pass (dense-only hits carry none: fetch them with [`Collection::get`] as needed).
    pub fn retrieve_hits(
        &mut self,
        query: &str,
        retriever: Retriever,
        k: usize,
    ) -> Result<Vec<Hit>> {
        let k = k
            .min(usize::try_from(self.len()).unwrap_or(usize::MAX))
            .max(1);
        let bm25 = |c: &Self, k| -> Result<Vec<(StoredDoc, f32)>> {
            Ok(search_docs(&c.index, &c.reader, c.f.body, query, k)?
                .iter()
                .map(|(d, s)| (c.stored(d), *s))
                .collect())
        };
        let bare = |v: Vec<(String, f32)>| -> Vec<Hit> {
            v.into_iter()
                .map(|(id, score)| Hit {
                    id,
                    score,
                    doc: None,
                })
                .collect()
        };
        match retriever {
            Retriever::Bm25 => Ok(bm25(self, k)?
                .into_iter()
                .map(|(d, score)| Hit {
                    id: d.id.clone(),
                    score,
                    doc: Some(d),
                })
                .collect()),
            Retriever::Dense => Ok(bare(self.dense_search(query, k)?)),
            Retriever::Hybrid(mode) => {
                let depth = k.max(100);
                let b = bm25(self, depth)?;
                let d = self.dense_search(query, depth)?;
                let ids: Vec<(String, f32)> = b.iter().map(|(d, s)| (d.id.clone(), *s)).collect();
                let mut docs: std::collections::HashMap<String, StoredDoc> =
                    b.into_iter().map(|(d, _)| (d.id.clone(), d)).collect();
                Ok(fuse(&ids, &d, mode, k)
                    .into_iter()
                    .map(|(id, score)| Hit {
                        doc: docs.remove(&id),
                        id,
                        score,
                    })
                    .collect())
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
}

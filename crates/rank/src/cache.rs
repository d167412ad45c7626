//! A pair-score cache in front of any [`Reranker`]: RAG traffic repeats (the same question
//! asked again, the same chunks retrieved again), so a (query, document) pair already scored
//! by this reranker under the same options is answered from memory, and a document repeated
//! inside one request is scored once.
//!
//! One cache wraps one reranker (one model), so the model's identity, window and template are
//! those of the wrapped reranker; the key hashes (to 128 bits) the long-document policy, the
//! instruction, the query and the document text. The cache is an LRU bounded by an estimate of
//! its memory; a hit returns the stored score and logit bit for bit. Errors are not cached.

use crate::{RankError, Ranked, Reranker, ScoreKind, ScoreOptions, Scored};
use lru::LruCache;
use std::collections::HashMap;
use std::hash::{BuildHasher, DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Memory one entry takes, as counted against the limit: the 16-byte key, the 8-byte value
/// and the LRU's node and table overhead (measured: about 70 bytes; rounded up).
pub const ENTRY_BYTES: usize = 96;

/// Counters of a cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Documents answered from the cache (or as a repeat inside their request).
    pub hits: u64,
    /// Documents the wrapped reranker scored.
    pub misses: u64,
    /// Entries held now.
    pub entries: usize,
    /// Estimated bytes held now (`entries * ENTRY_BYTES`).
    pub bytes: usize,
}

/// A [`Reranker`] that remembers the scores of its wrapped reranker.
pub struct CachedReranker<R> {
    inner: R,
    entries: Mutex<LruCache<u128, (f32, f32)>>,
    hashers: (std::hash::RandomState, std::hash::RandomState),
    hits: AtomicU64,
    misses: AtomicU64,
}

impl<R: Reranker> CachedReranker<R> {
    /// Wraps `inner` with a cache of at most `max_bytes` (at least one entry).
    pub fn new(inner: R, max_bytes: usize) -> Self {
        let cap = std::num::NonZeroUsize::new((max_bytes / ENTRY_BYTES).max(1))
            .unwrap_or(std::num::NonZeroUsize::MIN);
        CachedReranker {
            inner,
            entries: Mutex::new(LruCache::new(cap)),
            hashers: Default::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The wrapped reranker.
    pub fn inner(&self) -> &R {
        &self.inner
    }

    /// Hits, misses and size so far.
    pub fn stats(&self) -> CacheStats {
        let entries = self.lock().len();
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries,
            bytes: entries * ENTRY_BYTES,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<u128, (f32, f32)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The two hasher states of a request (its options and query, hashed once); a document's
    /// 128-bit key continues them with its text ([`key`]).
    fn request_hashers(&self, opts: &ScoreOptions, query: &str) -> [DefaultHasher; 2] {
        [&self.hashers.0, &self.hashers.1].map(|state| {
            let mut h = state.build_hasher();
            opts.long_docs.hash(&mut h);
            opts.instruction.hash(&mut h);
            query.hash(&mut h);
            h
        })
    }
}

/// The key of `doc` under a request's [`CachedReranker::request_hashers`].
fn key(request: &[DefaultHasher; 2], doc: &str) -> u128 {
    let [a, b] = request.clone().map(|mut h| {
        doc.hash(&mut h);
        h.finish()
    });
    (u128::from(a) << 64) | u128::from(b)
}

impl<R: Reranker> Reranker for CachedReranker<R> {
    fn name(&self) -> String {
        self.inner.name()
    }

    fn score_kind(&self) -> ScoreKind {
        self.inner.score_kind()
    }

    fn score_detailed(
        &self,
        query: &str,
        documents: &[&str],
        opts: &ScoreOptions,
    ) -> Result<Scored, RankError> {
        let request = self.request_hashers(opts, query);
        let keys: Vec<u128> = documents.iter().map(|d| key(&request, d)).collect();
        let mut found: Vec<Option<(f32, f32)>> = {
            let mut cache = self.lock();
            keys.iter().map(|k| cache.get(k).copied()).collect()
        };
        // The documents to score: each missing key once, in first-seen order.
        let mut todo: Vec<usize> = Vec::new();
        let mut slot: HashMap<u128, usize> = HashMap::new();
        for (i, k) in keys.iter().enumerate() {
            if found[i].is_none() && !slot.contains_key(k) {
                slot.insert(*k, todo.len());
                todo.push(i);
            }
        }
        let (mut tokens, mut timings) = (0, None);
        if !todo.is_empty() {
            let docs: Vec<&str> = todo.iter().map(|&i| documents[i]).collect();
            let scored = self.inner.score_detailed(query, &docs, opts)?;
            if scored.ranked.len() != docs.len() {
                return Err(RankError::Internal(format!(
                    "the reranker scored {} of {} documents",
                    scored.ranked.len(),
                    docs.len()
                )));
            }
            tokens = scored.tokens;
            timings = scored.timings;
            let mut values = vec![(f32::NAN, f32::NAN); docs.len()];
            for r in &scored.ranked {
                if let Some(v) = values.get_mut(r.index) {
                    *v = (r.score, r.logit);
                }
            }
            let mut cache = self.lock();
            for (t, &i) in todo.iter().enumerate() {
                cache.put(keys[i], values[t]);
            }
            for (i, k) in keys.iter().enumerate() {
                if found[i].is_none() {
                    found[i] = slot.get(k).map(|&t| values[t]);
                }
            }
        }
        let scored_now = todo.len() as u64;
        self.misses.fetch_add(scored_now, Ordering::Relaxed);
        self.hits
            .fetch_add(documents.len() as u64 - scored_now, Ordering::Relaxed);
        let ranked = found
            .into_iter()
            .enumerate()
            .map(|(index, v)| {
                let (score, logit) = v.unwrap_or((f32::NAN, f32::NAN));
                Ranked {
                    index,
                    score,
                    logit,
                }
            })
            .collect();
        Ok(Scored {
            ranked,
            tokens,
            cascade: None,
            timings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::long_docs::LongDocs;
    use std::sync::Arc;

    /// Scores a document by its length plus the instruction's; records every document scored.
    #[derive(Default)]
    struct Counting {
        seen: Mutex<Vec<String>>,
        fail_on: Option<&'static str>,
    }

    impl Reranker for Counting {
        fn name(&self) -> String {
            "counting".into()
        }
        fn score_detailed(
            &self,
            query: &str,
            documents: &[&str],
            opts: &ScoreOptions,
        ) -> Result<Scored, RankError> {
            if documents.iter().any(|d| Some(*d) == self.fail_on) {
                return Err(RankError::Internal("refused".into()));
            }
            let extra = opts.instruction.as_deref().map_or(0, str::len);
            self.seen
                .lock()
                .unwrap()
                .extend(documents.iter().map(|d| d.to_string()));
            Ok(Scored {
                ranked: documents
                    .iter()
                    .enumerate()
                    .map(|(index, d)| Ranked {
                        index,
                        score: (d.len() + query.len() + extra) as f32 / 100.0,
                        logit: d.len() as f32 - 0.5,
                    })
                    .collect(),
                tokens: documents.len() * 10,
                cascade: None,
                timings: None,
            })
        }
    }

    fn scores(s: &Scored) -> Vec<(usize, u32, u32)> {
        s.ranked
            .iter()
            .map(|r| (r.index, r.score.to_bits(), r.logit.to_bits()))
            .collect()
    }

    #[test]
    fn repeats_are_scored_once_and_hits_are_bit_identical() {
        let c = CachedReranker::new(Counting::default(), 1 << 20);
        let o = ScoreOptions::default();
        let first = c
            .score_detailed("q", &["aa", "b", "aa", "ccc"], &o)
            .unwrap();
        assert_eq!(
            c.inner().seen.lock().unwrap().len(),
            3,
            "the repeat inside the request"
        );
        assert_eq!(first.tokens, 30);
        let again = c
            .score_detailed("q", &["ccc", "aa", "b", "aa"], &o)
            .unwrap();
        assert_eq!(
            c.inner().seen.lock().unwrap().len(),
            3,
            "all from the cache"
        );
        assert_eq!(again.tokens, 0);
        let by_doc = |s: &Scored, docs: &[&str]| -> Vec<(String, u32, u32)> {
            s.ranked
                .iter()
                .map(|r| {
                    (
                        docs[r.index].to_string(),
                        r.score.to_bits(),
                        r.logit.to_bits(),
                    )
                })
                .collect()
        };
        let mut a = by_doc(&first, &["aa", "b", "aa", "ccc"]);
        let mut b = by_doc(&again, &["ccc", "aa", "b", "aa"]);
        a.sort();
        b.sort();
        assert_eq!(a, b);
        assert_eq!(
            scores(&again).iter().map(|s| s.0).collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
        let st = c.stats();
        assert_eq!((st.hits, st.misses, st.entries), (5, 3, 3));
        assert_eq!(st.bytes, 3 * ENTRY_BYTES);
    }

    #[test]
    fn another_query_instruction_or_policy_is_another_entry() {
        let c = CachedReranker::new(Counting::default(), 1 << 20);
        let plain = ScoreOptions::default();
        let inst = ScoreOptions {
            instruction: Some("judge".into()),
            ..Default::default()
        };
        let reject = ScoreOptions {
            long_docs: Some(LongDocs::Reject),
            ..Default::default()
        };
        c.score_detailed("q", &["d"], &plain).unwrap();
        c.score_detailed("q2", &["d"], &plain).unwrap();
        let with = c.score_detailed("q", &["d"], &inst).unwrap();
        c.score_detailed("q", &["d"], &reject).unwrap();
        assert_eq!(c.inner().seen.lock().unwrap().len(), 4);
        // The instruction changes the score, and the cache gives the instruction's score.
        let again = c.score_detailed("q", &["d"], &inst).unwrap();
        assert_eq!(scores(&with), scores(&again));
        assert_eq!(c.inner().seen.lock().unwrap().len(), 4);
    }

    #[test]
    fn the_cache_stays_within_its_bytes_and_errors_are_not_cached() {
        let c = CachedReranker::new(
            Counting {
                fail_on: Some("bad"),
                ..Default::default()
            },
            10 * ENTRY_BYTES,
        );
        let o = ScoreOptions::default();
        let docs: Vec<String> = (0..25).map(|i| format!("doc {i}")).collect();
        let refs: Vec<&str> = docs.iter().map(String::as_str).collect();
        c.score_detailed("q", &refs, &o).unwrap();
        assert_eq!(c.stats().entries, 10);
        assert!(c.stats().bytes <= 10 * ENTRY_BYTES);
        // The most recent ten are kept.
        c.score_detailed("q", &refs[15..], &o).unwrap();
        assert_eq!(c.inner().seen.lock().unwrap().len(), 25);
        assert!(c.score_detailed("q", &["x", "bad"], &o).is_err());
        assert!(c.score_detailed("q", &["x", "bad"], &o).is_err());
        c.score_detailed("q", &["x"], &o).unwrap();
        assert_eq!(
            c.inner().seen.lock().unwrap().len(),
            26,
            "x was not cached by the failure"
        );
    }

    #[test]
    fn threads_sharing_a_cache_get_the_same_scores() {
        let c = Arc::new(CachedReranker::new(Counting::default(), 1 << 20));
        let docs: Vec<String> = (0..50)
            .map(|i| format!("passage {i}").repeat(i % 5 + 1))
            .collect();
        let want = Counting::default()
            .score_detailed(
                "q",
                &docs.iter().map(String::as_str).collect::<Vec<_>>(),
                &ScoreOptions::default(),
            )
            .unwrap();
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (c, docs) = (c.clone(), docs.clone());
                std::thread::spawn(move || {
                    let refs: Vec<&str> = docs.iter().map(String::as_str).collect();
                    c.score_detailed("q", &refs, &ScoreOptions::default())
                        .unwrap()
                })
            })
            .collect();
        for h in handles {
            assert_eq!(scores(&h.join().unwrap()), scores(&want));
        }
        let st = c.stats();
        assert_eq!(st.hits + st.misses, 8 * 50);
        assert_eq!(st.entries, 50);
    }
}

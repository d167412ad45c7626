//! A pair-score cache in front of any [`Reranker`]: RAG traffic repeats (the same question
//! asked again, the same chunks retrieved again), so a (query, document) pair already scored
//! by this reranker under the same options is answered from memory, and a document repeated
//! inside one request is scored once.
//!
//! One cache wraps one reranker (one model), so the model's identity, window and template are
//! those of the wrapped reranker; the key hashes (to 128 bits) the long-document policy, the
//! instruction, the query and the document text. The cache is an LRU bounded by an estimate of
//! its memory; a hit returns the stored score and logit bit for bit. Errors are not cached.
//! Concurrent requests for the same pair score it once: the first scores it, the others wait
//! for its answer (and score it themselves if it fails).

use crate::{RankError, Ranked, Reranker, ScoreKind, ScoreOptions, Scored};
use lru::LruCache;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

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
    /// Pairs being scored now, by key: a concurrent request for one waits for its answer.
    inflight: Mutex<HashMap<u128, Arc<Pending>>>,
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
            inflight: Mutex::new(HashMap::new()),
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
        let mut values: HashMap<u128, (f32, f32)> = HashMap::new();
        // Keys to score here (the first document holding each), and keys another request is
        // scoring now, whose answers are awaited instead.
        let mut todo: Vec<usize> = Vec::new();
        let mut waits: Vec<(u128, Arc<Pending>)> = Vec::new();
        {
            let mut seen: HashSet<u128> = HashSet::new();
            let mut inflight = self.inflight();
            let mut cache = self.lock();
            for (i, k) in keys.iter().enumerate() {
                if !seen.insert(*k) {
                    continue; // a repeat inside this request
                }
                if let Some(v) = cache.get(k) {
                    values.insert(*k, *v);
                } else if let Some(p) = inflight.get(k) {
                    waits.push((*k, p.clone()));
                } else {
                    inflight.insert(*k, Arc::new(Pending::default()));
                    todo.push(i);
                }
            }
        }
        let mut owned = Owned {
            cache: self,
            keys: todo.iter().map(|&i| keys[i]).collect(),
        };
        let (mut tokens, mut timings) = (0, None);
        if !todo.is_empty() {
            let fresh = self.score_inner(query, documents, &keys, &todo, opts)?;
            tokens = fresh.tokens;
            timings = fresh.timings;
            for (t, &i) in todo.iter().enumerate() {
                values.insert(keys[i], fresh.values[t]);
            }
            owned.finish(&values);
        }
        // Pairs another request was scoring: its answer, or (it failed) scored here.
        let mut retry: Vec<usize> = Vec::new();
        for (k, p) in waits {
            match p.wait(opts.deadline) {
                Some(v) => {
                    values.insert(k, v);
                }
                None => retry.extend(keys.iter().position(|x| *x == k)),
            }
        }
        if !retry.is_empty() {
            let fresh = self.score_inner(query, documents, &keys, &retry, opts)?;
            tokens += fresh.tokens;
            for (t, &i) in retry.iter().enumerate() {
                values.insert(keys[i], fresh.values[t]);
            }
        }
        let scored_now = (todo.len() + retry.len()) as u64;
        self.misses.fetch_add(scored_now, Ordering::Relaxed);
        self.hits
            .fetch_add(documents.len() as u64 - scored_now, Ordering::Relaxed);
        let ranked = keys
            .iter()
            .enumerate()
            .map(|(index, k)| {
                let (score, logit) = values.get(k).copied().unwrap_or((f32::NAN, f32::NAN));
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

impl<R: Reranker> CachedReranker<R> {
    /// Scores `documents[i]` for each `i` of `which` with the wrapped reranker and stores
    /// them under their `keys[i]`.
    fn score_inner(
        &self,
        query: &str,
        documents: &[&str],
        keys: &[u128],
        which: &[usize],
        opts: &ScoreOptions,
    ) -> Result<Fresh, RankError> {
        let docs: Vec<&str> = which.iter().map(|&i| documents[i]).collect();
        let scored = self.inner.score_detailed(query, &docs, opts)?;
        if scored.ranked.len() != docs.len() {
            return Err(RankError::Internal(format!(
                "the reranker scored {} of {} documents",
                scored.ranked.len(),
                docs.len()
            )));
        }
        let mut values = vec![(f32::NAN, f32::NAN); docs.len()];
        for r in &scored.ranked {
            if let Some(v) = values.get_mut(r.index) {
                *v = (r.score, r.logit);
            }
        }
        let mut cache = self.lock();
        for (t, &i) in which.iter().enumerate() {
            cache.put(keys[i], values[t]);
        }
        Ok(Fresh {
            values,
            tokens: scored.tokens,
            timings: scored.timings,
        })
    }
}

impl<R> CachedReranker<R> {
    fn inflight(&self) -> std::sync::MutexGuard<'_, HashMap<u128, Arc<Pending>>> {
        self.inflight.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What [`CachedReranker::score_inner`] scored: (score, logit) per document asked for.
struct Fresh {
    values: Vec<(f32, f32)>,
    tokens: usize,
    timings: Option<crate::Timings>,
}

/// A pair being scored by one request, awaited by others asking for it meanwhile.
#[derive(Default)]
struct Pending {
    state: Mutex<Option<Option<(f32, f32)>>>,
    ready: Condvar,
}

impl Pending {
    /// Records the outcome (None: the scoring failed) and wakes the waiters.
    fn set(&self, v: Option<(f32, f32)>) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = Some(v);
        self.ready.notify_all();
    }

    /// The score, once the scoring request has it; None if it failed or `deadline` passed.
    fn wait(&self, deadline: Option<Instant>) -> Option<(f32, f32)> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(v) = *state {
                return v;
            }
            let slice = match deadline {
                Some(d) => d.checked_duration_since(Instant::now())?,
                None => Duration::from_secs(1),
            };
            state = self
                .ready
                .wait_timeout(state, slice.min(Duration::from_secs(1)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// The keys a request registered as in flight; whatever it has not finished when dropped
/// (an error, a panic) is marked failed, so waiters score those pairs themselves.
struct Owned<'a, R> {
    cache: &'a CachedReranker<R>,
    keys: Vec<u128>,
}

impl<R> Owned<'_, R> {
    /// Publishes the scores of every owned key (from `values`) and forgets them.
    fn finish(&mut self, values: &HashMap<u128, (f32, f32)>) {
        self.release(|k| values.get(k).copied());
    }

    /// Takes every owned key out of the in-flight map and gives its waiters `value(key)`
    /// (None: failed).
    fn release(&mut self, value: impl Fn(&u128) -> Option<(f32, f32)>) {
        let mut inflight = self.cache.inflight();
        for k in self.keys.drain(..) {
            if let Some(p) = inflight.remove(&k) {
                p.set(value(&k));
            }
        }
    }
}

impl<R> Drop for Owned<'_, R> {
    fn drop(&mut self) {
        self.release(|_| None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::long_docs::LongDocs;
    use std::sync::atomic::AtomicBool;

    /// Scores a document by its length plus the instruction's; records every document scored.
    #[derive(Default)]
    struct Counting {
        seen: Mutex<Vec<String>>,
        fail_on: Option<&'static str>,
        /// Milliseconds each call takes.
        delay_ms: u64,
        /// Fail the first call (after its delay).
        fail_first: AtomicBool,
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
            std::thread::sleep(Duration::from_millis(self.delay_ms));
            if documents.iter().any(|d| Some(*d) == self.fail_on)
                || self.fail_first.swap(false, Ordering::SeqCst)
            {
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

    fn concurrently(c: &Arc<CachedReranker<Counting>>, n: usize) -> Vec<Result<Scored, RankError>> {
        let handles: Vec<_> = (0..n)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || {
                    // Staggered so that the first is scoring when the others ask.
                    std::thread::sleep(Duration::from_millis(20 * t as u64));
                    let docs: Vec<String> = (0..10).map(|i| format!("doc {i}")).collect();
                    let refs: Vec<&str> = docs.iter().map(String::as_str).collect();
                    c.score_detailed("q", &refs, &ScoreOptions::default())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    }

    #[test]
    fn concurrent_identical_requests_are_scored_once() {
        let c = Arc::new(CachedReranker::new(
            Counting {
                delay_ms: 300,
                ..Default::default()
            },
            1 << 20,
        ));
        let out = concurrently(&c, 4);
        let first = scores(out[0].as_ref().unwrap());
        for o in &out {
            assert_eq!(scores(o.as_ref().unwrap()), first);
        }
        assert_eq!(c.inner().seen.lock().unwrap().len(), 10, "scored once");
        let st = c.stats();
        assert_eq!((st.misses, st.hits), (10, 30));
        assert!(c.inflight().is_empty());
    }

    #[test]
    fn when_the_scoring_request_fails_the_waiting_ones_score_for_themselves() {
        let c = Arc::new(CachedReranker::new(
            Counting {
                delay_ms: 300,
                fail_first: AtomicBool::new(true),
                ..Default::default()
            },
            1 << 20,
        ));
        let out = concurrently(&c, 3);
        assert!(out[0].is_err());
        let want = scores(out[1].as_ref().unwrap());
        assert_eq!(scores(out[2].as_ref().unwrap()), want);
        assert!(c.inflight().is_empty());
        // The failed call recorded nothing; the retry scored the ten once more.
        assert!(c.inner().seen.lock().unwrap().len() <= 20);
    }
}

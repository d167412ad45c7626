//! The two-stage search over a collection: first stage, rerank, fusion, abstention, with the
//! time of each stage. [`search`] is the one search path: the CLI, the server and the tests
//! call it with a store, a collection name and a [`Reranker`] (the CLI's local model, the
//! server's batching queue, a hosted API). The store holds whatever it locks only for the
//! first stage, so concurrent searches rerank side by side.

use crate::collection::{body, Collection, Retriever, StoredDoc};
use crate::hybrid::HybridMode;
use crate::store::CollectionStore;
use crate::{Result, RetrieveError};
use crossrank_rank::fusion::{abstain, Breakdown, FusionConfig, FusionInput};
use crossrank_rank::{Reranker, ScoreOptions};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Exact-match filters applied to first-stage candidates.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct Filters {
    /// Keep only this source.
    pub source: Option<String>,
    /// Keep only chunks of this parent document.
    pub doc_id: Option<String>,
    /// Keep only documents whose metadata has these key/value pairs.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

impl Filters {
    /// Whether no filter is set.
    pub fn is_empty(&self) -> bool {
        self.source.is_none() && self.doc_id.is_none() && self.metadata.is_empty()
    }
    fn keep(&self, d: &StoredDoc) -> bool {
        self.source
            .as_ref()
            .is_none_or(|s| d.source.as_ref() == Some(s))
            && self.doc_id.as_ref().is_none_or(|s| &d.doc_id == s)
            && self
                .metadata
                .iter()
                .all(|(k, v)| d.metadata.as_ref().and_then(|m| m.get(k)) == Some(v))
    }
}

/// A search request (CLI flags or the server's JSON body); every field but the query has a
/// default.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct SearchRequest {
    /// The query.
    pub query: String,
    /// Results returned.
    pub top_k: usize,
    /// First-stage candidates reranked.
    pub candidates: usize,
    /// The first stage.
    pub retriever: RetrieverKind,
    /// How `hybrid` combines the BM25 and dense lists (default: RRF, k = 60).
    pub hybrid: HybridMode,
    /// Filters on the candidates.
    pub filters: Filters,
    /// Fusion settings.
    pub fusion: FusionConfig,
    /// Abstain when no candidate's relevance reaches this.
    pub min_score: Option<f64>,
}

impl Default for SearchRequest {
    fn default() -> Self {
        SearchRequest {
            query: String::new(),
            top_k: 10,
            candidates: 50,
            retriever: RetrieverKind::Hybrid,
            hybrid: HybridMode::default(),
            filters: Filters::default(),
            fusion: FusionConfig::default(),
            min_score: None,
        }
    }
}

impl SearchRequest {
    /// Refuses an empty query and zero counts; the first stage it names.
    pub fn check(&self) -> Result<Retriever> {
        if self.query.trim().is_empty() {
            return Err(RetrieveError::Invalid("the query is empty".into()));
        }
        if self.top_k == 0 || self.candidates == 0 {
            return Err(RetrieveError::Invalid(
                "top_k and candidates must be >= 1".into(),
            ));
        }
        Ok(self.retriever.with_mode(self.hybrid.validate()?))
    }
}

/// One result.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchHit {
    /// Id.
    pub id: String,
    /// Parent document.
    pub doc_id: String,
    /// Fused score.
    pub score: f64,
    /// Every signal.
    pub breakdown: Breakdown,
    /// Text.
    pub text: String,
    /// Title.
    pub title: Option<String>,
    /// Source.
    pub source: Option<String>,
    /// Date.
    pub updated_at: Option<String>,
    /// Metadata.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: Option<serde_json::Value>,
}

/// Milliseconds per stage.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Timings {
    /// First stage (and fetching the candidates).
    pub retrieve: f64,
    /// Reranking.
    pub rerank: f64,
    /// Fusion and abstention.
    pub fuse: f64,
}

/// The best candidate, named when abstaining.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Best {
    /// Id.
    pub id: String,
    /// Its relevance.
    pub score: f64,
    /// Its text.
    pub text: String,
}

/// A search answer.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchResponse {
    /// Whether a candidate reaches `min_score` (always true without one, if any candidate).
    pub answerable: bool,
    /// The most relevant candidate.
    pub best: Option<Best>,
    /// Results, best first.
    pub results: Vec<SearchHit>,
    /// Time per stage.
    pub timings_ms: Timings,
}

/// Seconds since the Unix epoch (the "now" freshness is measured from).
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The first stage a request names: `bm25`, `dense` or `hybrid` (fused as
/// [`SearchRequest::hybrid`] says) in JSON, TOML and on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, clap::ValueEnum)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum RetrieverKind {
    /// BM25 on tantivy.
    Bm25,
    /// The bi-encoder's dense index.
    Dense,
    /// Both, fused (reciprocal rank by default).
    #[default]
    Hybrid,
}

impl RetrieverKind {
    /// The name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            RetrieverKind::Bm25 => "bm25",
            RetrieverKind::Dense => "dense",
            RetrieverKind::Hybrid => "hybrid",
        }
    }
}

impl RetrieverKind {
    /// The retriever, hybrid fused by `mode`.
    pub fn with_mode(self, mode: HybridMode) -> Retriever {
        match self {
            RetrieverKind::Bm25 => Retriever::Bm25,
            RetrieverKind::Dense => Retriever::Dense,
            RetrieverKind::Hybrid => Retriever::Hybrid(mode),
        }
    }
}

impl From<RetrieverKind> for Retriever {
    /// Hybrid with the default fusion (RRF, k = 60).
    fn from(k: RetrieverKind) -> Retriever {
        k.with_mode(HybridMode::default())
    }
}

/// Runs the pipeline over collection `name` of `store`: the first stage, then `reranker`
/// (with `opts`: deadline, cancellation, long-document policy) on the candidates, fusion and
/// the abstention rule. Blocks; async callers run it on a blocking thread.
pub fn search(
    store: &dyn CollectionStore,
    name: &str,
    req: &SearchRequest,
    now_unix: i64,
    reranker: &dyn Reranker,
    opts: &ScoreOptions,
) -> Result<SearchResponse> {
    store
        .first_stage(name, req)?
        .finish(req, now_unix, reranker, opts)
}

/// The first stage's candidates (stored documents after filters), ready for the rest of the
/// pipeline, which no longer needs the collection. A store builds them with [`first_stage`]
/// (over a [`Collection`]) or [`Candidates::new`] (its own retrieval).
pub struct Candidates {
    docs: Vec<StoredDoc>,
    retrieve_ms: f64,
}

/// Retrieves and filters the candidates of `req`.
pub fn first_stage(c: &mut Collection, req: &SearchRequest) -> Result<Candidates> {
    let r = req.check()?;
    let t0 = Instant::now();
    // Filters apply after the first stage, so look deeper when filtering.
    let depth = if req.filters.is_empty() {
        req.candidates
    } else {
        req.candidates.saturating_mul(10)
    };
    let mut docs = Vec::with_capacity(req.candidates.min(1024));
    for hit in c.retrieve_hits(&req.query, r, depth)? {
        let doc = match hit.doc {
            Some(d) => Some(d),
            None => c.get(&hit.id)?,
        };
        if let Some(d) = doc {
            if req.filters.keep(&d) {
                docs.push(d);
                if docs.len() == req.candidates {
                    break;
                }
            }
        }
    }
    Ok(Candidates {
        docs,
        retrieve_ms: t0.elapsed().as_secs_f64() * 1e3,
    })
}

impl Candidates {
    /// Candidates a store retrieved itself, best first, filters applied, taking `retrieve_ms`.
    pub fn new(docs: Vec<StoredDoc>, retrieve_ms: f64) -> Self {
        Candidates { docs, retrieve_ms }
    }

    /// Milliseconds the first stage took.
    pub fn retrieve_ms(&self) -> f64 {
        self.retrieve_ms
    }

    /// The candidates, best first.
    pub fn docs(&self) -> &[StoredDoc] {
        &self.docs
    }

    /// The texts the reranker reads (title and text), in candidate order.
    pub fn texts(&self) -> Vec<String> {
        self.docs
            .iter()
            .map(|d| body(d.title.as_deref(), &d.text))
            .collect()
    }

    /// Reranks the candidates with `reranker` (relevance = its score in [0, 1]), fuses and
    /// applies the abstention rule.
    pub fn finish(
        self,
        req: &SearchRequest,
        now_unix: i64,
        reranker: &dyn Reranker,
        opts: &ScoreOptions,
    ) -> Result<SearchResponse> {
        let t1 = Instant::now();
        let texts = self.texts();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let relevance = if refs.is_empty() {
            Vec::new()
        } else {
            reranker
                .score_with(&req.query, &refs, opts)?
                .iter()
                .map(|r| r.score as f64)
                .collect()
        };
        let rerank_ms = t1.elapsed().as_secs_f64() * 1e3;
        self.fuse(req, now_unix, relevance, rerank_ms)
    }

    /// Fuses relevances (one per text of [`Candidates::texts`], taking `rerank_ms`) and
    /// applies the abstention rule.
    fn fuse(
        self,
        req: &SearchRequest,
        now_unix: i64,
        relevance: Vec<f64>,
        rerank_ms: f64,
    ) -> Result<SearchResponse> {
        let docs = self.docs;
        if relevance.len() != docs.len() {
            return Err(RetrieveError::Invalid(format!(
                "the reranker scored {} of {} candidates",
                relevance.len(),
                docs.len()
            )));
        }
        let t2 = Instant::now();
        let inputs: Vec<FusionInput> = docs
            .iter()
            .zip(&relevance)
            .map(|(d, s)| FusionInput {
                id: d.id.clone(),
                doc_id: d.doc_id.clone(),
                relevance: *s,
                age_days: d.age_days(now_unix),
                source: d.source.clone(),
            })
            .collect();
        let mut fused = req.fusion.fuse(&inputs);
        let decision = abstain(&relevance, req.min_score.unwrap_or(f64::NEG_INFINITY));
        if let Some(m) = req.min_score {
            fused.retain(|f| f.breakdown.relevance >= m);
        }
        fused.truncate(req.top_k);
        let results = fused
            .into_iter()
            .map(|f| {
                let d = &docs[f.index];
                SearchHit {
                    id: d.id.clone(),
                    doc_id: d.doc_id.clone(),
                    score: f.breakdown.score,
                    breakdown: f.breakdown,
                    text: d.text.clone(),
                    title: d.title.clone(),
                    source: d.source.clone(),
                    updated_at: d.updated_at.clone(),
                    metadata: d.metadata.clone(),
                }
            })
            .collect();
        Ok(SearchResponse {
            answerable: decision.answerable,
            best: decision.best_index.map(|i| Best {
                id: docs[i].id.clone(),
                score: decision.best_score,
                text: docs[i].text.clone(),
            }),
            results,
            timings_ms: Timings {
                retrieve: self.retrieve_ms,
                rerank: rerank_ms,
                fuse: t2.elapsed().as_secs_f64() * 1e3,
            },
        })
    }
}

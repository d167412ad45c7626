//! The two-stage search over a collection: first stage, rerank, fusion, abstention, with the
//! time of each stage. The one search path: the CLI and the tests call [`search`] with a
//! blocking reranker; the server calls [`first_stage`] under the collection's lock and then
//! [`Candidates::finish_async`] with its batching queue, so concurrent searches rerank side by
//! side. Both end in the same private fusion step.

use crate::collection::{body, Collection, Retriever, StoredDoc};
use crate::hybrid::HybridMode;
use crate::{Result, RetrieveError};
use crossrank_rank::fusion::{abstain, Breakdown, FusionConfig, FusionInput};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Exact-match filters applied to first-stage candidates.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Filters {
    /// Keep only this source.
    pub source: Option<String>,
    /// Keep only chunks of this parent document.
    pub doc_id: Option<String>,
    /// Keep only documents whose metadata has these key/value pairs.
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

impl Filters {
    fn is_empty(&self) -> bool {
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
            filters: Filters::default(),
            fusion: FusionConfig::default(),
            min_score: None,
        }
    }
}

/// One result.
#[derive(Debug, Clone, Serialize)]
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
    pub metadata: Option<serde_json::Value>,
}

/// Milliseconds per stage.
#[derive(Debug, Clone, Serialize)]
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

/// The first stage a request names: `bm25`, `dense` or `hybrid` (RRF, k = 60) in JSON, TOML
/// and on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RetrieverKind {
    /// BM25 on tantivy.
    Bm25,
    /// The bi-encoder's dense index.
    Dense,
    /// Both, fused by reciprocal rank (k = 60).
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

impl From<RetrieverKind> for Retriever {
    fn from(k: RetrieverKind) -> Retriever {
        match k {
            RetrieverKind::Bm25 => Retriever::Bm25,
            RetrieverKind::Dense => Retriever::Dense,
            RetrieverKind::Hybrid => Retriever::Hybrid(HybridMode::default()),
        }
    }
}

/// Runs the pipeline; `rerank(query, texts)` returns a relevance in [0, 1] per text.
pub fn search(
    c: &mut Collection,
    req: &SearchRequest,
    now_unix: i64,
    rerank: impl FnOnce(&str, &[&str]) -> Result<Vec<f64>>,
) -> Result<SearchResponse> {
    first_stage(c, req)?.finish(req, now_unix, rerank)
}

/// The first stage's candidates (stored documents after filters), ready for the rest of the
/// pipeline, which no longer needs the collection: a server holds a collection's lock only
/// for [`first_stage`], so concurrent searches rerank side by side.
pub struct Candidates {
    docs: Vec<StoredDoc>,
    retrieve_ms: f64,
}

/// Retrieves and filters the candidates of `req`.
pub fn first_stage(c: &mut Collection, req: &SearchRequest) -> Result<Candidates> {
    if req.query.trim().is_empty() {
        return Err(RetrieveError::Invalid("the query is empty".into()));
    }
    if req.top_k == 0 || req.candidates == 0 {
        return Err(RetrieveError::Invalid(
            "top_k and candidates must be >= 1".into(),
        ));
    }
    let r = Retriever::from(req.retriever);
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
    /// The texts the reranker reads (title and text), in candidate order.
    pub fn texts(&self) -> Vec<String> {
        self.docs
            .iter()
            .map(|d| body(d.title.as_deref(), &d.text))
            .collect()
    }

    /// Reranks with `rerank(query, texts)` (one relevance in [0, 1] per text), fuses and
    /// applies the abstention rule.
    pub fn finish(
        self,
        req: &SearchRequest,
        now_unix: i64,
        rerank: impl FnOnce(&str, &[&str]) -> Result<Vec<f64>>,
    ) -> Result<SearchResponse> {
        let t1 = Instant::now();
        let texts = self.texts();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let relevance = if refs.is_empty() {
            Vec::new()
        } else {
            rerank(&req.query, &refs)?
        };
        let rerank_ms = t1.elapsed().as_secs_f64() * 1e3;
        self.fuse(req, now_unix, relevance, rerank_ms)
    }

    /// [`Candidates::finish`] with an asynchronous reranker (the server's batching queue):
    /// `rerank(query, texts)` is awaited, so nothing is held while the model runs.
    pub async fn finish_async<F, Fut, E>(
        self,
        req: &SearchRequest,
        now_unix: i64,
        rerank: F,
    ) -> std::result::Result<SearchResponse, RerankFailed<E>>
    where
        F: FnOnce(String, Vec<String>) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<Vec<f64>, E>>,
    {
        let t1 = Instant::now();
        let texts = self.texts();
        let relevance = if texts.is_empty() {
            Vec::new()
        } else {
            rerank(req.query.clone(), texts)
                .await
                .map_err(RerankFailed::Rerank)?
        };
        let rerank_ms = t1.elapsed().as_secs_f64() * 1e3;
        self.fuse(req, now_unix, relevance, rerank_ms)
            .map_err(RerankFailed::Pipeline)
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

/// Why [`Candidates::finish_async`] failed: the reranker (its own error, kept as it is so a
/// server can answer 429 / 503 / 4xx as the reranker said) or the pipeline after it.
#[derive(Debug)]
pub enum RerankFailed<E> {
    /// The reranker failed.
    Rerank(E),
    /// Fusion or abstention failed.
    Pipeline(RetrieveError),
}

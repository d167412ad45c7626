//! What every dialect shares: validate a request, score it through the model's [`Reranker`]
//! (a local model's batching queue or a hosted API, the same trait the CLI uses), and map the
//! reranker's errors to statuses.

use crate::errors::ApiError;
use crate::state::{AppState, Backend, ModelHandle};
use axum::http::{HeaderMap, HeaderValue};
use crossrank_rank::cascade::CascadeReport;
pub use crossrank_rank::long_docs::LongDocs;
use crossrank_rank::{Cancel, RankError, Ranked, Reranker, ScoreOptions, Timings};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A rerank request in dialect-neutral form.
pub struct RerankJob {
    /// Requested model name (None = default).
    pub model: Option<String>,
    /// The query.
    pub query: String,
    /// Document texts.
    pub documents: Vec<String>,
    /// Long-document policy.
    pub long_docs: LongDocs,
    /// Instruction for models whose prompt template takes one (ignored by the others).
    pub instruction: Option<String>,
    /// A cascade's latency budget in milliseconds: it answers with the best ranking finished
    /// by then (ignored by other models; at most `request_timeout_ms`).
    pub deadline_ms: Option<usize>,
}

/// Scores in input order plus accounting.
pub struct RerankOutcome {
    /// Name of the model used.
    pub model: String,
    /// One per document, input order (sort with [`crossrank_rank::sort_ranked`]).
    pub scores: Vec<Ranked>,
    /// Tokens scored (all chunks, special tokens included; estimated for hosted models).
    pub tokens: usize,
    /// How a cascade answered (stages named as served).
    pub cascade: Option<CascadeReport>,
    /// Where the scoring time went (local models).
    pub timings: Option<Timings>,
    /// Whether the scores are calibrated (a calibration file applies to the model); then
    /// [`RerankOutcome::raw_score`] is the model's own probability.
    pub calibrated: bool,
    /// When scoring began.
    pub started: Instant,
}

impl RerankOutcome {
    /// The model's own (uncalibrated) probability of a result, for calibrated models only.
    pub fn raw_score(&self, r: &Ranked) -> Option<f32> {
        self.calibrated.then(|| 1.0 / (1.0 + (-r.logit).exp()))
    }

    /// TEI's timing headers, in milliseconds: `x-compute-time` / `x-total-time` (validation to
    /// scores), and for local models `x-tokenization-time`, `x-queue-time` (waiting for the
    /// first engine batch) and `x-inference-time`; `x-compute-tokens` is the tokens scored.
    pub fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        let ms = |v: f64| HeaderValue::from(v.max(0.0).round() as u64);
        let total = self.started.elapsed().as_secs_f64() * 1e3;
        h.insert("x-compute-time", ms(total));
        h.insert("x-total-time", ms(total));
        if let Some(t) = &self.timings {
            h.insert("x-tokenization-time", ms(t.tokenize_ms));
            h.insert("x-queue-time", ms(t.queue_ms));
            h.insert("x-inference-time", ms(t.inference_ms));
        }
        h.insert("x-compute-tokens", HeaderValue::from(self.tokens as u64));
        h
    }
}

/// Validates, queues and scores a request.
pub async fn rerank(state: &Arc<AppState>, job: RerankJob) -> Result<RerankOutcome, ApiError> {
    let started = Instant::now();
    if job.documents.is_empty() {
        return Err(ApiError::bad_request("documents must not be empty"));
    }
    if job.documents.len() > state.config.max_documents {
        return Err(ApiError::too_large(format!(
            "{} documents in one request; the limit (max_documents) is {}",
            job.documents.len(),
            state.config.max_documents
        )));
    }
    let handle: &ModelHandle = state.model(job.model.as_deref())?;
    let timeout = state.config.request_timeout_ms;
    if let Some(ms) = job.deadline_ms.filter(|&ms| ms as u64 > timeout) {
        return Err(ApiError::unprocessable(format!(
            "field \"deadline_ms\" is {ms}; the server answers within {timeout} ms \
             (request_timeout_ms), so it must be at most that"
        )));
    }
    let opts = ScoreOptions {
        long_docs: Some(job.long_docs),
        instruction: job.instruction,
        budget: job
            .deadline_ms
            .map(|ms| Instant::now() + Duration::from_millis(ms as u64)),
        ..Default::default()
    };
    let query = job.query;
    let documents = job.documents;
    let scored = score(state, handle, opts, move |reranker, opts| {
        let docs: Vec<&str> = documents.iter().map(String::as_str).collect();
        reranker
            .score_detailed(&query, &docs, opts)
            .map_err(request_error)
    })
    .await?;
    let mut cascade = scored.cascade;
    if let (Some(report), Backend::Cascade { stages }) = (&mut cascade, &handle.backend) {
        for (s, (name, _)) in report.stages.iter_mut().zip(stages) {
            s.model = name.clone();
        }
        state
            .metrics
            .cascade(&handle.name, report.final_stage, report.stages.len());
    }
    state
        .metrics
        .reranked(&handle.name, scored.ranked.iter().map(|r| r.score));
    Ok(RerankOutcome {
        model: handle.name.clone(),
        scores: scored.ranked,
        tokens: scored.tokens,
        cascade,
        timings: scored.timings,
        calibrated: matches!(
            &handle.backend,
            Backend::Local {
                calibration: Some(_),
                ..
            }
        ),
        started,
    })
}

/// Runs `work` with the model's reranker on a blocking thread, bounded by
/// `request_timeout_ms`: the options get that deadline and a cancellation flag that is set
/// when this future is dropped (a client gone) or times out, so queued work is dropped.
pub async fn score<T: Send + 'static>(
    state: &Arc<AppState>,
    handle: &ModelHandle,
    mut opts: ScoreOptions,
    work: impl FnOnce(&dyn Reranker, &ScoreOptions) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let ms = state.config.request_timeout_ms;
    let timeout = Duration::from_millis(ms);
    let cancel = Cancel::default();
    let guard = cancel.on_drop();
    opts.deadline = Some(Instant::now() + timeout);
    opts.cancel = Some(cancel);
    let reranker = handle.reranker.clone();
    let task = tokio::task::spawn_blocking(move || work(&*reranker, &opts));
    let out = match tokio::time::timeout(timeout, task).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(ApiError::internal(format!("the scoring task failed: {e}"))),
        Err(_) => Err(ApiError::unavailable(format!(
            "the request was not answered within {ms} ms"
        ))),
    };
    if out.is_ok() {
        guard.disarm();
    }
    out
}

/// A reranker's error as the status it deserves: the request's fault 4xx, a busy or
/// unreachable reranker 503 (with `Retry-After` when it said when), a bug 500.
pub fn request_error(e: RankError) -> ApiError {
    match e {
        RankError::TooLong { .. } => ApiError::bad_request(e.to_string()),
        RankError::TooLarge(m) => ApiError::too_large(m),
        RankError::Unsupported(m) => ApiError::unprocessable(m),
        RankError::Engine(e) => ApiError::unprocessable(format!("tokenisation failed: {e}")),
        RankError::Internal(m) => ApiError::internal(m),
        RankError::Overloaded {
            message,
            retry_after,
        } => ApiError::overloaded(message, retry_after),
        RankError::Unavailable(m) => ApiError::unavailable(m),
        RankError::Provider { .. } => {
            ApiError::unavailable(format!("upstream reranker failed: {e}"))
        }
    }
}

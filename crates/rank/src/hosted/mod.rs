//! Hosted rerankers behind the [`Reranker`] interface, chosen by a spec string:
//! `cohere:MODEL`, `voyage:MODEL`, `jina:MODEL`, `tei:URL`, `crossrank:URL[#MODEL]`.
//!
//! Each provider file knows its wire format and documented limits; this module splits a
//! request into calls that fit, sends them concurrently, retries 429 / 5xx / connection errors
//! with exponential backoff and jitter (honouring `Retry-After`), checks every answer and
//! merges the results back into input order. API keys come from the environment
//! (`COHERE_API_KEY`, `VOYAGE_API_KEY`, `JINA_API_KEY`) and are never logged or shown.

mod cohere;
mod crossrank;
mod jina;
mod tei;
mod voyage;

use crate::long_docs::LongDocs;
use crate::{RankError, Ranked, Reranker, ScoreKind, ScoreOptions, Scored};
use serde_json::Value;
use std::time::Duration;

/// One provider's wire format and limits.
pub(crate) trait Provider: Send + Sync {
    /// Name for messages ("cohere").
    fn name(&self) -> &'static str;
    /// Model (or URL) for messages.
    fn model(&self) -> &str;
    /// Default base URL (scheme://host[:port]); None (the default, for self-hosted servers)
    /// when the spec carries it.
    fn default_base(&self) -> Option<&'static str> {
        None
    }
    /// Environment variable overriding the base URL (none by default).
    fn base_env(&self) -> Option<&'static str> {
        None
    }
    /// Environment variable holding the API key (none by default: no key).
    fn key_env(&self) -> Option<&'static str> {
        None
    }
    /// Full URL of the rerank endpoint.
    fn endpoint(&self, base: &str) -> String;
    /// Request body for one call.
    fn body(&self, query: &str, docs: &[&str]) -> Value;
    /// The body field that, set to `false`, makes the provider refuse documents over the
    /// model's window instead of truncating them; None (the default) when it has no such switch.
    fn truncation_switch(&self) -> Option<&'static str> {
        None
    }
    /// (index within the call, score) from a response body.
    fn parse(&self, v: &Value) -> Result<Vec<(usize, f32)>, String>;
    /// Documents per call.
    fn max_documents(&self) -> usize;
    /// Estimated tokens per call (chars / 4), if the provider limits them.
    fn max_tokens(&self) -> Option<usize> {
        None
    }
    /// What the scores mean.
    fn score_kind(&self) -> ScoreKind {
        ScoreKind::ProviderRelevance
    }
}

/// Network behaviour of hosted rerankers.
#[derive(Debug, Clone)]
pub struct HostedOptions {
    /// Per-call timeout.
    pub timeout: Duration,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// First backoff delay (doubled per retry, with +-50% jitter).
    pub backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
    /// Calls in flight at once.
    pub concurrency: usize,
    /// Overrides the provider's base URL.
    pub base_url: Option<String>,
    /// Overrides the documents-per-call limit.
    pub max_documents: Option<usize>,
    /// The API key; without one, the provider's environment variable (`COHERE_API_KEY`, ...).
    pub api_key: Option<String>,
}

impl Default for HostedOptions {
    fn default() -> Self {
        HostedOptions {
            timeout: Duration::from_secs(60),
            max_retries: 4,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(20),
            concurrency: 4,
            base_url: None,
            max_documents: None,
            api_key: None,
        }
    }
}

/// A reranker reached over HTTP.
pub struct HostedReranker {
    provider: Box<dyn Provider>,
    client: reqwest::blocking::Client,
    key: Option<String>,
    base: String,
    opts: HostedOptions,
    long_docs: LongDocs,
}

/// Whether `spec` names a hosted reranker.
pub fn is_hosted_spec(spec: &str) -> bool {
    ["cohere:", "voyage:", "jina:", "tei:", "crossrank:"]
        .iter()
        .any(|p| spec.starts_with(p))
}

fn err(provider: &str, status: Option<u16>, message: impl Into<String>) -> RankError {
    RankError::Provider {
        provider: provider.to_string(),
        status,
        message: message.into(),
    }
}

impl HostedReranker {
    /// Builds the reranker a spec names (see the module docs).
    pub fn from_spec(spec: &str, opts: HostedOptions) -> Result<Self, RankError> {
        let (kind, rest) = spec
            .split_once(':')
            .ok_or_else(|| err("hosted", None, format!("{spec:?} is not provider:model")))?;
        if rest.is_empty() {
            return Err(err(kind, None, format!("{spec:?} names no model or URL")));
        }
        let provider: Box<dyn Provider> = match kind {
            "cohere" => Box::new(cohere::Cohere {
                model: rest.to_string(),
            }),
            "voyage" => Box::new(voyage::Voyage {
                model: rest.to_string(),
            }),
            "jina" => Box::new(jina::Jina {
                model: rest.to_string(),
            }),
            "tei" => Box::new(tei::Tei {
                url: rest.trim_end_matches('/').to_string(),
            }),
            "crossrank" => Box::new(crossrank::Crossrank::from_spec(rest)),
            other => {
                return Err(err(
                    other,
                    None,
                    "unknown provider (cohere, voyage, jina, tei, crossrank)",
                ))
            }
        };
        let base = opts
            .base_url
            .clone()
            .or_else(|| {
                provider
                    .base_env()
                    .and_then(|v| std::env::var(v).ok())
                    .filter(|s| !s.is_empty())
            })
            .or_else(|| provider.default_base().map(String::from))
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_string();
        let key = opts
            .api_key
            .clone()
            .or_else(|| provider.key_env().and_then(|v| std::env::var(v).ok()))
            .filter(|k| !k.is_empty());
        if provider.key_env().is_some() && key.is_none() {
            return Err(err(
                provider.name(),
                None,
                format!("no API key: set {}", provider.key_env().unwrap_or_default()),
            ));
        }
        let client = reqwest::blocking::Client::builder()
            .timeout(opts.timeout)
            .user_agent(concat!("crossrank/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| err(provider.name(), None, format!("HTTP client: {e}")))?;
        Ok(HostedReranker {
            provider,
            client,
            key,
            base,
            opts,
            long_docs: LongDocs::default(),
        })
    }

    /// Handles long documents this way unless a request says otherwise (see
    /// [`Reranker::score_with`]: only [`LongDocs::Reject`] changes what is sent).
    pub fn with_long_docs(mut self, long_docs: LongDocs) -> Self {
        self.long_docs = long_docs;
        self
    }

    /// Splits documents into calls under the provider's limits: (start, end) ranges.
    fn chunks(&self, query: &str, docs: &[&str]) -> Vec<(usize, usize)> {
        let max_docs = self
            .opts
            .max_documents
            .unwrap_or_else(|| self.provider.max_documents())
            .max(1);
        let max_tokens = self.provider.max_tokens();
        let est = |d: &str| (query.len() + d.len()) / 4 + 1;
        let mut out = Vec::new();
        let mut start = 0;
        let mut tokens = 0;
        for (i, d) in docs.iter().enumerate() {
            let t = est(d);
            let over_tokens = max_tokens.is_some_and(|m| tokens + t > m);
            if i > start && (i - start >= max_docs || over_tokens) {
                out.push((start, i));
                start = i;
                tokens = 0;
            }
            tokens += t;
        }
        if start < docs.len() {
            out.push((start, docs.len()));
        }
        out
    }

    /// One call with retries; returns scores in the call's document order.
    fn call(&self, query: &str, docs: &[&str], refuse_long: bool) -> Result<Vec<f32>, RankError> {
        let name = self.provider.name();
        let url = self.provider.endpoint(&self.base);
        let mut body = self.provider.body(query, docs);
        if let Some(switch) = self.provider.truncation_switch().filter(|_| refuse_long) {
            body[switch] = Value::Bool(false);
        }
        let mut attempt = 0u32;
        loop {
            let mut req = self
                .client
                .post(&url)
                .json(&body)
                .header("accept", "application/json");
            if let Some(k) = &self.key {
                req = req.bearer_auth(k);
            }
            let (retry, wait, failure) = match req.send() {
                Err(e) => {
                    let kind = if e.is_timeout() {
                        "timed out"
                    } else {
                        "connection failed"
                    };
                    (
                        true,
                        None,
                        err(name, None, format!("{kind}: {}", without_url(&e))),
                    )
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retry_after = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<f64>().ok())
                        .map(|s| Duration::from_secs_f64(s.clamp(0.0, 600.0)));
                    let text = resp.text().unwrap_or_default();
                    if (200..300).contains(&status) {
                        let v: Value = serde_json::from_str(&text).map_err(|e| {
                            err(
                                name,
                                Some(status),
                                format!("malformed JSON in the response: {e}"),
                            )
                        })?;
                        let pairs = self
                            .provider
                            .parse(&v)
                            .map_err(|m| err(name, Some(status), m))?;
                        return merge_call(name, status, pairs, docs.len());
                    }
                    let message = error_message(&text);
                    let transient = status == 429 || (500..600).contains(&status);
                    (transient, retry_after, err(name, Some(status), message))
                }
            };
            if !retry || attempt >= self.opts.max_retries {
                return Err(match failure {
                    RankError::Provider {
                        provider,
                        status,
                        message,
                    } if attempt > 0 => RankError::Provider {
                        provider,
                        status,
                        message: format!("{message} (gave up after {} attempts)", attempt + 1),
                    },
                    e => e,
                });
            }
            std::thread::sleep(
                wait.unwrap_or_else(|| self.backoff(attempt))
                    .min(self.opts.max_backoff.max(Duration::from_millis(1))),
            );
            attempt += 1;
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.opts.backoff.as_secs_f64() * 2f64.powi(attempt as i32);
        // Jitter in [0.5, 1.5) from the clock's nanoseconds.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let jitter = 0.5 + (nanos % 1_000_000) as f64 / 1_000_000.0;
        Duration::from_secs_f64((base * jitter).min(self.opts.max_backoff.as_secs_f64()))
    }
}

/// A reqwest error without the URL (it may carry a key in a query string).
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "<url>");
    }
    s
}

fn error_message(text: &str) -> String {
    let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    for k in ["message", "detail", "error"] {
        if let Some(m) = v.get(k) {
            return match m {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
        }
    }
    let t: String = text.chars().take(300).collect();
    if t.is_empty() {
        "empty response".into()
    } else {
        t
    }
}

/// Checks a call's results cover each document once.
fn merge_call(
    name: &str,
    status: u16,
    pairs: Vec<(usize, f32)>,
    n: usize,
) -> Result<Vec<f32>, RankError> {
    let mut out = vec![f32::NAN; n];
    for (i, s) in pairs {
        if i >= n {
            return Err(err(
                name,
                Some(status),
                format!("result index {i} is out of range for {n} documents"),
            ));
        }
        out[i] = s;
    }
    let missing = out.iter().filter(|s| s.is_nan()).count();
    if missing > 0 {
        return Err(err(
            name,
            Some(status),
            format!("the response scored {} of {n} documents", n - missing),
        ));
    }
    Ok(out)
}

impl Reranker for HostedReranker {
    fn name(&self) -> String {
        format!("{}:{}", self.provider.name(), self.provider.model())
    }

    fn score_kind(&self) -> ScoreKind {
        self.provider.score_kind()
    }

    /// Providers handle long documents their own way (truncation or chunking, as their docs
    /// say); only [`LongDocs::Reject`] changes a call: it is sent as the provider's switch
    /// (Voyage, TEI, crossrank `truncation` / `truncate: false`) and refused with
    /// [`RankError::Unsupported`] where there is none (Cohere, Jina). A per-request instruction
    /// is not sent: hosted APIs take none.
    fn score_detailed(
        &self,
        query: &str,
        documents: &[&str],
        opts: &ScoreOptions,
    ) -> Result<Scored, RankError> {
        if documents.is_empty() {
            return Ok(Scored::default());
        }
        let refuse_long = opts.long_docs.unwrap_or(self.long_docs) == LongDocs::Reject;
        if refuse_long && self.provider.truncation_switch().is_none() {
            return Err(RankError::Unsupported(format!(
                "{} has no switch to refuse long documents (truncation: false); \
                 it truncates or chunks them itself",
                self.provider.name()
            )));
        }
        let calls = self.chunks(query, documents);
        let mut scores = vec![0.0f32; documents.len()];
        let mut results: Vec<Option<Result<Vec<f32>, RankError>>> =
            (0..calls.len()).map(|_| None).collect();
        for group in (0..calls.len())
            .collect::<Vec<_>>()
            .chunks(self.opts.concurrency.max(1))
        {
            std::thread::scope(|s| {
                let handles: Vec<_> = group
                    .iter()
                    .map(|&c| {
                        let (a, b) = calls[c];
                        (
                            c,
                            s.spawn(move || self.call(query, &documents[a..b], refuse_long)),
                        )
                    })
                    .collect();
                for (c, h) in handles {
                    results[c] = Some(h.join().unwrap_or_else(|_| {
                        Err(err(self.provider.name(), None, "worker panicked"))
                    }));
                }
            });
        }
        for ((a, _), r) in calls.iter().zip(results) {
            let r = r.unwrap_or_else(|| Err(err(self.provider.name(), None, "call not made")))?;
            scores[*a..*a + r.len()].copy_from_slice(&r);
        }
        let ranked = scores
            .into_iter()
            .enumerate()
            .map(|(index, score)| {
                let p = score.clamp(1e-7, 1.0 - 1e-7);
                Ranked {
                    index,
                    score,
                    logit: (p / (1.0 - p)).ln(),
                }
            })
            .collect();
        // Providers bill in their own tokens; about four characters per token is the usual
        // estimate.
        let tokens = documents
            .iter()
            .map(|d| (d.len() + query.len()) / 4 + 1)
            .sum();
        Ok(Scored {
            ranked,
            tokens,
            cascade: None,
            timings: None,
        })
    }
}

/// Reads `results` (or Voyage's `data`) as (index, relevance_score) pairs.
pub(crate) fn parse_results(
    v: &Value,
    key: &str,
    score_key: &str,
) -> Result<Vec<(usize, f32)>, String> {
    let arr = v
        .get(key)
        .and_then(|r| r.as_array())
        .ok_or_else(|| format!("the response has no \"{key}\" list"))?;
    parse_items(arr, score_key)
}

/// (index, score) from a list of result objects.
pub(crate) fn parse_items(arr: &[Value], score_key: &str) -> Result<Vec<(usize, f32)>, String> {
    arr.iter()
        .map(|r| {
            let i = r
                .get("index")
                .and_then(|x| x.as_u64())
                .ok_or("a result has no integer \"index\"")?;
            let s = r
                .get(score_key)
                .and_then(|x| x.as_f64())
                .ok_or_else(|| format!("a result has no numeric \"{score_key}\""))?;
            Ok((i as usize, s as f32))
        })
        .collect()
}

//! Prometheus metrics, kept by hand: a few counters and fixed-bucket histograms.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
const PAIR_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
const TOKEN_BUCKETS: &[f64] = &[
    64.0, 256.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0, 32768.0, 65536.0,
];

const DOC_BUCKETS: &[f64] = &[
    1.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 10000.0,
];
const PAIR_TOKEN_BUCKETS: &[f64] = &[
    16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0,
];
const SCORE_BUCKETS: &[f64] = &[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];

#[derive(Clone)]
struct Histogram {
    buckets: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(buckets: &'static [f64]) -> Self {
        Histogram {
            buckets,
            counts: vec![0; buckets.len()],
            sum: 0.0,
            count: 0,
        }
    }
    fn observe(&mut self, v: f64) {
        for (b, c) in self.buckets.iter().zip(self.counts.iter_mut()) {
            if v <= *b {
                *c += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, c) in self.buckets.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(String, u16), u64>,
    latency: BTreeMap<String, Histogram>,
    queue_time: BTreeMap<String, Histogram>,
    batch_pairs: BTreeMap<String, Histogram>,
    batch_tokens: BTreeMap<String, Histogram>,
    tokens: BTreeMap<String, u64>,
    queue_depth: BTreeMap<String, i64>,
    predicted_wait: BTreeMap<String, f64>,
    throughput: BTreeMap<String, f64>,
    refused: BTreeMap<(String, &'static str), u64>,
    failed_batches: BTreeMap<(String, &'static str), u64>,
    cascade_final: BTreeMap<(String, usize), u64>,
    cascade_cut: BTreeMap<String, u64>,
    request_documents: BTreeMap<String, Histogram>,
    scores: BTreeMap<String, Histogram>,
    pair_tokens: BTreeMap<String, Histogram>,
    documents: BTreeMap<String, u64>,
    pairs: BTreeMap<String, u64>,
    full_window: BTreeMap<String, u64>,
    searches: BTreeMap<String, u64>,
    abstentions: BTreeMap<String, u64>,
}

/// The server's metrics.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One finished HTTP request.
    pub fn request(&self, route: &str, status: u16, seconds: f64) {
        let mut m = self.lock();
        *m.requests.entry((route.to_string(), status)).or_default() += 1;
        m.latency
            .entry(route.to_string())
            .or_insert_with(|| Histogram::new(LATENCY_BUCKETS))
            .observe(seconds);
    }

    /// Time a request waited before its first pair entered a batch.
    pub fn queue_time(&self, model: &str, seconds: f64) {
        self.lock()
            .queue_time
            .entry(model.to_string())
            .or_insert_with(|| Histogram::new(LATENCY_BUCKETS))
            .observe(seconds);
    }

    /// One engine batch.
    pub fn batch(&self, model: &str, pairs: usize, tokens: usize) {
        let mut m = self.lock();
        m.batch_pairs
            .entry(model.to_string())
            .or_insert_with(|| Histogram::new(PAIR_BUCKETS))
            .observe(pairs as f64);
        m.batch_tokens
            .entry(model.to_string())
            .or_insert_with(|| Histogram::new(TOKEN_BUCKETS))
            .observe(tokens as f64);
        *m.tokens.entry(model.to_string()).or_default() += tokens as u64;
    }

    /// A model's queue: requests waiting, predicted seconds to drain the backlog, measured
    /// tokens per second.
    pub fn set_queue(&self, model: &str, depth: usize, wait_s: f64, tokens_per_s: f64) {
        let mut m = self.lock();
        m.queue_depth.insert(model.to_string(), depth as i64);
        m.predicted_wait.insert(model.to_string(), wait_s);
        m.throughput.insert(model.to_string(), tokens_per_s);
    }

    /// A request refused at admission (`reason`: queue_full or deadline).
    pub fn refused(&self, model: &str, reason: &'static str) {
        *self
            .lock()
            .refused
            .entry((model.to_string(), reason))
            .or_default() += 1;
    }

    /// A cascade request answered by stage `final_stage` (0-based) of `stages`; below the
    /// last, its budget cut it.
    pub fn cascade(&self, model: &str, final_stage: usize, stages: usize) {
        let mut m = self.lock();
        *m.cascade_final
            .entry((model.to_string(), final_stage + 1))
            .or_default() += 1;
        let cut = m.cascade_cut.entry(model.to_string()).or_default();
        if final_stage + 1 < stages {
            *cut += 1;
        }
    }

    /// One answered rerank request: its candidates and the scores it returned.
    pub fn reranked(&self, model: &str, scores: impl Iterator<Item = f32>) {
        let mut m = self.lock();
        let h = m
            .scores
            .entry(model.to_string())
            .or_insert_with(|| Histogram::new(SCORE_BUCKETS));
        let mut n = 0;
        for s in scores {
            h.observe(s as f64);
            n += 1;
        }
        m.request_documents
            .entry(model.to_string())
            .or_insert_with(|| Histogram::new(DOC_BUCKETS))
            .observe(n as f64);
    }

    /// Pairs a local model tokenised for `documents` documents (more pairs than documents:
    /// chunks), with their lengths; those of `window` tokens filled the model's window
    /// (truncated, or exactly fitting).
    pub fn pairs(&self, model: &str, documents: usize, lengths: &[usize], window: usize) {
        let mut m = self.lock();
        let h = m
            .pair_tokens
            .entry(model.to_string())
            .or_insert_with(|| Histogram::new(PAIR_TOKEN_BUCKETS));
        for &l in lengths {
            h.observe(l as f64);
        }
        *m.documents.entry(model.to_string()).or_default() += documents as u64;
        *m.pairs.entry(model.to_string()).or_default() += lengths.len() as u64;
        *m.full_window.entry(model.to_string()).or_default() +=
            lengths.iter().filter(|&&l| l >= window).count() as u64;
    }

    /// One collection search reranked by `model`; `abstained`: it answered not answerable.
    pub fn searched(&self, model: &str, abstained: bool) {
        let mut m = self.lock();
        *m.searches.entry(model.to_string()).or_default() += 1;
        let a = m.abstentions.entry(model.to_string()).or_default();
        if abstained {
            *a += 1;
        }
    }

    /// A batch that failed (`kind`: error or panic).
    pub fn failed_batch(&self, model: &str, kind: &'static str) {
        *self
            .lock()
            .failed_batches
            .entry((model.to_string(), kind))
            .or_default() += 1;
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let m = self.lock();
        let mut out = String::new();
        out.push_str("# HELP crossrank_requests_total HTTP requests by route and status.\n# TYPE crossrank_requests_total counter\n");
        for ((route, status), n) in &m.requests {
            let _ = writeln!(
                out,
                "crossrank_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP crossrank_request_duration_seconds HTTP request latency.\n# TYPE crossrank_request_duration_seconds histogram\n");
        for (route, h) in &m.latency {
            h.render(
                &mut out,
                "crossrank_request_duration_seconds",
                &format!("route=\"{route}\""),
            );
        }
        out.push_str("# HELP crossrank_queue_time_seconds Time from enqueue to the first batch.\n# TYPE crossrank_queue_time_seconds histogram\n");
        for (model, h) in &m.queue_time {
            h.render(
                &mut out,
                "crossrank_queue_time_seconds",
                &format!("model=\"{model}\""),
            );
        }
        out.push_str("# HELP crossrank_batch_pairs Pairs per engine batch.\n# TYPE crossrank_batch_pairs histogram\n");
        for (model, h) in &m.batch_pairs {
            h.render(
                &mut out,
                "crossrank_batch_pairs",
                &format!("model=\"{model}\""),
            );
        }
        out.push_str("# HELP crossrank_batch_tokens Tokens per engine batch.\n# TYPE crossrank_batch_tokens histogram\n");
        for (model, h) in &m.batch_tokens {
            h.render(
                &mut out,
                "crossrank_batch_tokens",
                &format!("model=\"{model}\""),
            );
        }
        out.push_str(
            "# HELP crossrank_tokens_total Tokens scored.\n# TYPE crossrank_tokens_total counter\n",
        );
        for (model, n) in &m.tokens {
            let _ = writeln!(out, "crossrank_tokens_total{{model=\"{model}\"}} {n}");
        }
        out.push_str("# HELP crossrank_queue_depth Requests waiting for the engine.\n# TYPE crossrank_queue_depth gauge\n");
        for (model, n) in &m.queue_depth {
            let _ = writeln!(out, "crossrank_queue_depth{{model=\"{model}\"}} {n}");
        }
        out.push_str("# HELP crossrank_queue_predicted_wait_seconds Predicted time to score the backlog.\n# TYPE crossrank_queue_predicted_wait_seconds gauge\n");
        for (model, v) in &m.predicted_wait {
            let _ = writeln!(
                out,
                "crossrank_queue_predicted_wait_seconds{{model=\"{model}\"}} {v}"
            );
        }
        out.push_str("# HELP crossrank_throughput_tokens_per_second Measured engine throughput.\n# TYPE crossrank_throughput_tokens_per_second gauge\n");
        for (model, v) in &m.throughput {
            let _ = writeln!(
                out,
                "crossrank_throughput_tokens_per_second{{model=\"{model}\"}} {v}"
            );
        }
        out.push_str("# HELP crossrank_refused_total Requests refused at admission.\n# TYPE crossrank_refused_total counter\n");
        for ((model, reason), n) in &m.refused {
            let _ = writeln!(
                out,
                "crossrank_refused_total{{model=\"{model}\",reason=\"{reason}\"}} {n}"
            );
        }
        out.push_str("# HELP crossrank_failed_batches_total Engine batches that failed.\n# TYPE crossrank_failed_batches_total counter\n");
        for ((model, kind), n) in &m.failed_batches {
            let _ = writeln!(
                out,
                "crossrank_failed_batches_total{{model=\"{model}\",kind=\"{kind}\"}} {n}"
            );
        }
        out.push_str("# HELP crossrank_cascade_requests_total Cascade requests by the stage whose ranking was returned (1 = first).\n# TYPE crossrank_cascade_requests_total counter\n");
        for ((model, stage), n) in &m.cascade_final {
            let _ = writeln!(
                out,
                "crossrank_cascade_requests_total{{model=\"{model}\",final_stage=\"{stage}\"}} {n}"
            );
        }
        out.push_str("# HELP crossrank_cascade_cut_total Cascade requests whose deadline_ms stopped a later stage.\n# TYPE crossrank_cascade_cut_total counter\n");
        for (model, n) in &m.cascade_cut {
            let _ = writeln!(out, "crossrank_cascade_cut_total{{model=\"{model}\"}} {n}");
        }
        for (name, help, map) in [
            (
                "crossrank_rerank_documents",
                "Documents (candidates) per rerank request.",
                &m.request_documents,
            ),
            (
                "crossrank_rerank_scores",
                "Scores returned, per document.",
                &m.scores,
            ),
            (
                "crossrank_pair_tokens",
                "Tokens per scored pair (after truncation and chunking).",
                &m.pair_tokens,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            for (model, h) in map {
                h.render(&mut out, name, &format!("model=\"{model}\""));
            }
        }
        for (name, help, map) in [
            (
                "crossrank_documents_total",
                "Documents a local model tokenised.",
                &m.documents,
            ),
            (
                "crossrank_pairs_total",
                "Pairs scored for them (chunks per document = pairs / documents).",
                &m.pairs,
            ),
            (
                "crossrank_full_window_pairs_total",
                "Pairs that filled the model's window (truncated, or exactly fitting).",
                &m.full_window,
            ),
            (
                "crossrank_searches_total",
                "Collection searches, by reranker.",
                &m.searches,
            ),
            (
                "crossrank_abstentions_total",
                "Collection searches answered not answerable (min_score).",
                &m.abstentions,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (model, n) in map {
                let _ = writeln!(out, "{name}{{model=\"{model}\"}} {n}");
            }
        }
        drop(m);
        if let Some(mem) = Memory::now() {
            out.push_str("# HELP process_resident_memory_bytes Resident memory.\n# TYPE process_resident_memory_bytes gauge\n");
            let _ = writeln!(out, "process_resident_memory_bytes {}", mem.rss);
            out.push_str("# HELP crossrank_peak_resident_memory_bytes Peak resident memory since start.\n# TYPE crossrank_peak_resident_memory_bytes gauge\n");
            let _ = writeln!(out, "crossrank_peak_resident_memory_bytes {}", mem.peak);
        }
        out
    }
}

/// The process's resident memory, from /proc/self/status (Linux).
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// Bytes resident now (VmRSS).
    pub rss: u64,
    /// Peak bytes resident (VmHWM).
    pub peak: u64,
}

impl Memory {
    /// Reads the numbers; None where /proc is not there.
    pub fn now() -> Option<Memory> {
        let text = std::fs::read_to_string("/proc/self/status").ok()?;
        let field = |name: &str| -> Option<u64> {
            let line = text.lines().find(|l| l.starts_with(name))?;
            let kb: u64 = line[name.len()..]
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()?;
            Some(kb * 1024)
        };
        Some(Memory {
            rss: field("VmRSS:")?,
            peak: field("VmHWM:")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.request("/rerank", 200, 0.02);
        m.request("/rerank", 200, 3.0);
        m.batch("m", 70, 5000);
        let text = m.render();
        assert!(text.contains("crossrank_requests_total{route=\"/rerank\",status=\"200\"} 2"));
        assert!(text.contains(
            "crossrank_request_duration_seconds_bucket{route=\"/rerank\",le=\"0.025\"} 1"
        ));
        assert!(text
            .contains("crossrank_request_duration_seconds_bucket{route=\"/rerank\",le=\"5\"} 2"));
        assert!(text.contains("crossrank_batch_pairs_bucket{model=\"m\",le=\"64\"} 0"));
        assert!(text.contains("crossrank_batch_pairs_sum{model=\"m\"} 70"));
        assert!(text.contains("crossrank_tokens_total{model=\"m\"} 5000"));
    }
}

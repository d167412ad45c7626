//! Runs a reranker over a [`RerankSet`]: first stage vs reranked vs fused, per-query deltas
//! with a significance test, and a sweep over candidate counts with rerank latency.

use crate::datasets::RerankSet;
use crate::metrics::{evaluate, MetricSpec};
use crate::run::Run;
use crate::stats::{randomization_test, wins_ties_losses};
use crate::{EvalError, Result};
use crossrank_rank::Reranker;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

/// Options of an evaluation.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Metrics.
    pub spec: MetricSpec,
    /// Candidate counts to sweep; the largest is the one the stages are compared at.
    pub candidates: Vec<usize>,
    /// Queries timed per candidate count for the latency figures.
    pub latency_queries: usize,
    /// k of reciprocal rank fusion for the fused stage.
    pub rrf_k: f64,
    /// Relabellings of the randomisation test.
    pub permutations: usize,
    /// Fit how much of the first stage to keep on half the queries, report the other half
    /// ([`crate::tune`]).
    pub tune_fusion: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            spec: MetricSpec::default(),
            candidates: vec![10, 20, 30, 50, 100],
            latency_queries: 10,
            rrf_k: 60.0,
            permutations: 10_000,
            tune_fusion: false,
        }
    }
}

/// Reranked vs first stage (or fused vs first stage) on one metric.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Metric compared.
    pub metric: String,
    /// Mean of (stage - first stage).
    pub mean_delta: f64,
    /// Queries improved.
    pub wins: usize,
    /// Queries unchanged.
    pub ties: usize,
    /// Queries worse.
    pub losses: usize,
    /// Two-sided paired randomisation test.
    pub p_value: f64,
}

/// Quality and latency at one candidate count.
#[derive(Debug, Clone, Serialize)]
pub struct SweepPoint {
    /// Candidates reranked per query.
    pub candidates: usize,
    /// Metrics of the reranked ranking.
    pub metrics: BTreeMap<String, f64>,
    /// Median milliseconds to rerank one query's candidates.
    pub rerank_ms_per_query: f64,
}

/// The whole result.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// Data set name.
    pub dataset: String,
    /// Reranker name.
    pub reranker: String,
    /// Queries evaluated.
    pub queries: usize,
    /// Candidates reranked for the stage comparison.
    pub candidates: usize,
    /// Relevance threshold of binary metrics.
    pub relevance_level: i32,
    /// Metric names in report order.
    pub metrics: Vec<String>,
    /// stage -> metric -> mean.
    pub stages: BTreeMap<String, BTreeMap<String, f64>>,
    /// "reranked" / "fused" vs "first_stage".
    pub comparisons: BTreeMap<String, Comparison>,
    /// One point per candidate count.
    pub sweep: Vec<SweepPoint>,
    /// qid -> stage -> the comparison metric.
    pub per_query: BTreeMap<String, BTreeMap<String, f64>>,
    /// Runs of each stage (TREC run files), not serialised.
    #[serde(skip)]
    pub runs: BTreeMap<String, Run>,
    /// With `tune_fusion`: the fitted first-stage fusion and its held-out comparison.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tuned_fusion: Option<crate::tune::TunedFusion>,
}

/// The metric stages are compared on: nDCG at 10 if asked for, else at the largest cut-off.
pub fn comparison_metric(spec: &MetricSpec) -> String {
    let k = if spec.ks.contains(&10) {
        10
    } else {
        spec.ks.iter().copied().max().unwrap_or(10)
    };
    format!("ndcg@{k}")
}

/// Evaluates `reranker` on `set`; `progress(done, total)` is called after each query.
pub fn run_eval(
    set: &RerankSet,
    reranker: &dyn Reranker,
    opts: &EvalOptions,
    progress: &dyn Fn(usize, usize),
) -> Result<EvalReport> {
    if opts.candidates.is_empty() || opts.candidates.contains(&0) {
        return Err(EvalError::Invalid("candidate counts must be >= 1".into()));
    }
    let queries: Vec<_> = set
        .queries
        .iter()
        .filter(|q| set.qrels.contains_key(&q.qid) && !q.candidates.is_empty())
        .collect();
    if queries.is_empty() {
        return Err(EvalError::Invalid(format!(
            "{}: no query has both candidates and judgments",
            set.name
        )));
    }
    let max_n = *opts.candidates.iter().max().unwrap_or(&100);
    // Logits of each query's top max_n candidates (ranking by logit: no sigmoid saturation).
    let mut logits: Vec<Vec<f64>> = Vec::with_capacity(queries.len());
    for (i, q) in queries.iter().enumerate() {
        let docs: Vec<&str> = q
            .candidates
            .iter()
            .take(max_n)
            .map(|c| c.text.as_str())
            .collect();
        logits.push(
            reranker
                .score(&q.text, &docs)?
                .iter()
                .map(|r| r.logit as f64)
                .collect(),
        );
        progress(i + 1, queries.len());
    }
    let first: Run = queries
        .iter()
        .map(|q| {
            (
                q.qid.clone(),
                q.candidates
                    .iter()
                    .map(|c| (c.docid.clone(), c.score))
                    .collect(),
            )
        })
        .collect();
    // Top n by the reranker, then the rest in first-stage order.
    let reranked = |n: usize| -> Run {
        queries
            .iter()
            .zip(&logits)
            .map(|(q, l)| {
                let n = n.min(l.len());
                let floor = l[..n].iter().copied().fold(f64::INFINITY, f64::min);
                let docs = q
                    .candidates
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        (
                            c.docid.clone(),
                            if i < n {
                                l[i]
                            } else {
                                floor - 1.0 - (i - n) as f64
                            },
                        )
                    })
                    .collect();
                (q.qid.clone(), docs)
            })
            .collect()
    };
    let fused = |n: usize| -> Run {
        queries
            .iter()
            .zip(&logits)
            .map(|(q, l)| {
                let n = n.min(l.len());
                let mut order: Vec<usize> = (0..n).collect();
                order.sort_by(|&a, &b| l[b].total_cmp(&l[a]));
                let mut rerank_rank = vec![0usize; n];
                for (r, &i) in order.iter().enumerate() {
                    rerank_rank[i] = r + 1;
                }
                let docs = q
                    .candidates
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let s = if i < n {
                            1.0 / (opts.rrf_k + (i + 1) as f64)
                                + 1.0 / (opts.rrf_k + rerank_rank[i] as f64)
                        } else {
                            -((i - n + 1) as f64)
                        };
                        (c.docid.clone(), s)
                    })
                    .collect();
                (q.qid.clone(), docs)
            })
            .collect()
    };
    let mut runs = BTreeMap::new();
    runs.insert("first_stage".to_string(), first);
    runs.insert("reranked".to_string(), reranked(max_n));
    runs.insert("fused".to_string(), fused(max_n));
    let evals: BTreeMap<String, _> = runs
        .iter()
        .map(|(k, r)| (k.clone(), evaluate(r, &set.qrels, &opts.spec)))
        .collect();
    let metric = comparison_metric(&opts.spec);
    let values = |stage: &str| -> Vec<f64> {
        evals[stage]
            .per_query
            .values()
            .map(|m| m[&metric])
            .collect()
    };
    let base = values("first_stage");
    let mut comparisons = BTreeMap::new();
    for stage in ["reranked", "fused"] {
        let v = values(stage);
        let (wins, ties, losses) = wins_ties_losses(&base, &v, 1e-9);
        comparisons.insert(
            stage.to_string(),
            Comparison {
                metric: metric.clone(),
                mean_delta: v.iter().zip(&base).map(|(a, b)| a - b).sum::<f64>() / v.len() as f64,
                wins,
                ties,
                losses,
                p_value: randomization_test(&base, &v, opts.permutations, 0x5eed),
            },
        );
    }
    let mut per_query: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for (stage, e) in &evals {
        for (qid, m) in &e.per_query {
            per_query
                .entry(qid.clone())
                .or_default()
                .insert(stage.clone(), m[&metric]);
        }
    }
    let mut counts = opts.candidates.clone();
    counts.sort_unstable();
    counts.dedup();
    let mut sweep = Vec::new();
    for &n in &counts {
        let metrics = evaluate(&reranked(n), &set.qrels, &opts.spec).mean;
        let mut ms = Vec::new();
        for q in queries.iter().take(opts.latency_queries.max(1)) {
            let docs: Vec<&str> = q
                .candidates
                .iter()
                .take(n)
                .map(|c| c.text.as_str())
                .collect();
            let t = Instant::now();
            reranker.score(&q.text, &docs)?;
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        ms.sort_by(f64::total_cmp);
        sweep.push(SweepPoint {
            candidates: n,
            metrics,
            rerank_ms_per_query: ms[ms.len() / 2],
        });
    }
    let tuned_fusion = if opts.tune_fusion {
        crate::tune::tune(&queries, &logits, &set.qrels, &opts.spec, &metric, max_n)
    } else {
        None
    };
    Ok(EvalReport {
        tuned_fusion,
        dataset: set.name.clone(),
        reranker: reranker.name(),
        queries: queries.len(),
        candidates: max_n,
        relevance_level: opts.spec.level,
        metrics: opts.spec.names(),
        stages: evals.into_iter().map(|(k, e)| (k, e.mean)).collect(),
        comparisons,
        sweep,
        per_query,
        runs,
    })
}

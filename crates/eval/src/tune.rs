//! How much of the first stage to keep, fitted on labelled queries: a weighted reciprocal-rank
//! fusion of the first stage's order and the reranker's ([`FirstStageFusion`], the same formula
//! the search pipeline applies), its `rrf_k` and reranker weight chosen by grid search on half
//! of the queries and reported on the other half beside the first stage, the reranker alone
//! and the default fusion.

use crate::datasets::Query;
use crate::metrics::{evaluate, MetricSpec};
use crate::qrels::Qrels;
use crate::run::Run;
use crossrank_rank::fusion::{ranks, FirstStageFusion};
use serde::Serialize;
use std::collections::BTreeMap;

/// The grid of RRF constants searched.
const KS: [f64; 10] = [1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 100.0, 200.0, 500.0];
/// Steps of the reranker weight (0, 0.05, ..., 1).
const WEIGHT_STEPS: usize = 20;

/// The outcome of [`tune`].
#[derive(Debug, Clone, Serialize)]
pub struct TunedFusion {
    /// The fitted setting (write it as `[first_stage]` of a fusion TOML).
    pub setting: FirstStageFusion,
    /// The metric maximised and reported.
    pub metric: String,
    /// Queries it was fitted on (every other query, from the first).
    pub tuned_on: usize,
    /// Held-out queries (the others).
    pub held_out: usize,
    /// The metric of the fitted setting on the fitting queries.
    pub tuned_metric: f64,
    /// The same four rankings as `held_out_metrics`, on the fitting queries.
    pub fit_metrics: BTreeMap<String, f64>,
    /// On the held-out queries: first_stage, reranked, default_fusion (k 60, weight 0.5) and
    /// tuned_fusion.
    pub held_out_metrics: BTreeMap<String, f64>,
}

/// The run of `setting` over the queries at `which`: the top `n` candidates by the fused
/// signal, the rest after them in first-stage order.
fn run(
    queries: &[&Query],
    logits: &[Vec<f64>],
    which: &[usize],
    n: usize,
    setting: FirstStageFusion,
) -> Run {
    which
        .iter()
        .map(|&q| {
            let (query, l) = (queries[q], &logits[q]);
            let n = n.min(l.len());
            let rerank = ranks(&l[..n]);
            let docs = query
                .candidates
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let s = if i < n {
                        setting.score(i + 1, rerank[i])
                    } else {
                        -((i - n + 1) as f64)
                    };
                    (c.docid.clone(), s)
                })
                .collect();
            (query.qid.clone(), docs)
        })
        .collect()
}

/// Fits the fusion on every other query and reports it on the rest (None with fewer than two
/// queries).
pub fn tune(
    queries: &[&Query],
    logits: &[Vec<f64>],
    qrels: &Qrels,
    spec: &MetricSpec,
    metric: &str,
    n: usize,
) -> Option<TunedFusion> {
    if queries.len() < 2 {
        return None;
    }
    let fit: Vec<usize> = (0..queries.len()).step_by(2).collect();
    let held: Vec<usize> = (1..queries.len()).step_by(2).collect();
    let mean = |which: &[usize], s: FirstStageFusion| -> f64 {
        evaluate(&run(queries, logits, which, n, s), qrels, spec)
            .mean
            .get(metric)
            .copied()
            .unwrap_or(f64::NAN)
    };
    let mut best: Option<(FirstStageFusion, f64)> = None;
    // Ties go to the larger reranker weight (listed first), then the smaller k.
    for step in (0..=WEIGHT_STEPS).rev() {
        for k in KS {
            let s = FirstStageFusion {
                rrf_k: k,
                reranker_weight: step as f64 / WEIGHT_STEPS as f64,
            };
            let m = mean(&fit, s);
            if best.is_none_or(|(_, b)| m > b + 1e-12) {
                best = Some((s, m));
            }
        }
    }
    let (setting, tuned_metric) = best?;
    let at = |w: f64, k: f64| FirstStageFusion {
        rrf_k: k,
        reranker_weight: w,
    };
    let four = [
        ("first_stage", at(0.0, 60.0)),
        ("reranked", at(1.0, 60.0)),
        ("default_fusion", FirstStageFusion::default()),
        ("tuned_fusion", setting),
    ];
    let on = |which: &[usize]| -> BTreeMap<String, f64> {
        four.iter()
            .map(|&(name, s)| (name.to_string(), mean(which, s)))
            .collect()
    };
    let (held_out_metrics, fit_metrics) = (on(&held), on(&fit));
    Some(TunedFusion {
        setting,
        metric: metric.to_string(),
        tuned_on: fit.len(),
        held_out: held.len(),
        tuned_metric,
        fit_metrics,
        held_out_metrics,
    })
}

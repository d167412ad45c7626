//! trec_eval's definitions of nDCG@k, P@k, MRR@k (reciprocal rank within the top k),
//! Recall@k and MAP, over rankings ordered as trec_eval orders them.
//!
//! - nDCG@k: gains are the judged grades (not thresholded), discount log2(rank + 1), the ideal
//!   ranking is all judged grades sorted; 0 when the ideal DCG is 0.
//! - P@k, Recall@k, MRR@k, MAP: relevant means grade >= `level` (TREC DL: 2).
//! - Only queries with both a ranking and judgments are evaluated; the mean is over them.

use crate::qrels::Qrels;
use crate::run::{trec_order, Run};
use std::collections::{BTreeMap, HashMap};

/// Which metrics to compute.
#[derive(Debug, Clone)]
pub struct MetricSpec {
    /// Cut-offs.
    pub ks: Vec<usize>,
    /// Lowest grade that counts as relevant for binary metrics.
    pub level: i32,
}

impl Default for MetricSpec {
    fn default() -> Self {
        MetricSpec {
            ks: vec![1, 3, 5, 10],
            level: 1,
        }
    }
}

impl MetricSpec {
    /// Metric names in report order.
    pub fn names(&self) -> Vec<String> {
        let mut v = Vec::new();
        for prefix in ["ndcg", "p", "mrr", "recall"] {
            for k in &self.ks {
                v.push(format!("{prefix}@{k}"));
            }
        }
        v.push("map".into());
        v
    }
}

/// Metrics of one query; `ranked` must already be in trec_eval order.
pub fn query_metrics(
    ranked: &[(String, f64)],
    judged: &HashMap<String, i32>,
    spec: &MetricSpec,
) -> BTreeMap<String, f64> {
    let grade = |d: &str| judged.get(d).copied().unwrap_or(0);
    let rel: Vec<bool> = ranked.iter().map(|(d, _)| grade(d) >= spec.level).collect();
    let num_rel = judged.values().filter(|&&g| g >= spec.level).count();
    let mut ideal: Vec<i32> = judged.values().copied().filter(|&g| g > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let mut out = BTreeMap::new();
    for &k in &spec.ks {
        let dcg: f64 = ranked
            .iter()
            .take(k)
            .enumerate()
            .map(|(i, (d, _))| grade(d).max(0) as f64 / ((i + 2) as f64).log2())
            .sum();
        let idcg: f64 = ideal
            .iter()
            .take(k)
            .enumerate()
            .map(|(i, &g)| g as f64 / ((i + 2) as f64).log2())
            .sum();
        out.insert(
            format!("ndcg@{k}"),
            if idcg > 0.0 { dcg / idcg } else { 0.0 },
        );
        let hits = rel.iter().take(k).filter(|&&r| r).count();
        out.insert(format!("p@{k}"), hits as f64 / k as f64);
        let rr = rel
            .iter()
            .take(k)
            .position(|&r| r)
            .map(|p| 1.0 / (p + 1) as f64)
            .unwrap_or(0.0);
        out.insert(format!("mrr@{k}"), rr);
        out.insert(
            format!("recall@{k}"),
            if num_rel > 0 {
                hits as f64 / num_rel as f64
            } else {
                0.0
            },
        );
    }
    let mut found = 0usize;
    let mut ap = 0.0;
    for (i, &r) in rel.iter().enumerate() {
        if r {
            found += 1;
            ap += found as f64 / (i + 1) as f64;
        }
    }
    out.insert(
        "map".into(),
        if num_rel > 0 {
            ap / num_rel as f64
        } else {
            0.0
        },
    );
    out
}

/// Per-query metrics and their means.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Evaluation {
    /// qid -> metric -> value.
    pub per_query: BTreeMap<String, BTreeMap<String, f64>>,
    /// metric -> mean over evaluated queries.
    pub mean: BTreeMap<String, f64>,
}

/// Evaluates a run against qrels.
pub fn evaluate(run: &Run, qrels: &Qrels, spec: &MetricSpec) -> Evaluation {
    let mut per_query = BTreeMap::new();
    for (qid, docs) in run {
        let Some(judged) = qrels.get(qid) else {
            continue;
        };
        let mut ranked = docs.clone();
        trec_order(&mut ranked);
        per_query.insert(qid.clone(), query_metrics(&ranked, judged, spec));
    }
    let mut mean = BTreeMap::new();
    if !per_query.is_empty() {
        for name in spec.names() {
            let s: f64 = per_query
                .values()
                .map(|m: &BTreeMap<String, f64>| m[&name])
                .sum();
            mean.insert(name, s / per_query.len() as f64);
        }
    }
    Evaluation { per_query, mean }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(pairs: &[(&str, i32)]) -> HashMap<String, i32> {
        pairs.iter().map(|(d, g)| (d.to_string(), *g)).collect()
    }

    #[test]
    fn hand_computed_values() {
        // Ranking a b c d; grades a=0 b=2 c=1 d=3, e=2 unretrieved; level 2.
        let ranked: Vec<(String, f64)> = ["a", "b", "c", "d"]
            .iter()
            .enumerate()
            .map(|(i, d)| (d.to_string(), 4.0 - i as f64))
            .collect();
        let j = judged(&[("a", 0), ("b", 2), ("c", 1), ("d", 3), ("e", 2)]);
        let spec = MetricSpec {
            ks: vec![3],
            level: 2,
        };
        let m = query_metrics(&ranked, &j, &spec);
        let dcg = 2.0 / 3f64.log2() + 1.0 / 4f64.log2();
        let idcg = 3.0 / 2f64.log2() + 2.0 / 3f64.log2() + 2.0 / 4f64.log2();
        assert!((m["ndcg@3"] - dcg / idcg).abs() < 1e-12);
        assert!((m["p@3"] - 1.0 / 3.0).abs() < 1e-12);
        assert!((m["mrr@3"] - 0.5).abs() < 1e-12);
        assert!((m["recall@3"] - 1.0 / 3.0).abs() < 1e-12);
        // AP: relevant at ranks 2 and 4 of 3 relevant: (1/2 + 2/4) / 3.
        assert!((m["map"] - (0.5 + 0.5) / 3.0).abs() < 1e-12);
    }

    #[test]
    fn ties_break_by_docid_descending_like_trec_eval() {
        let mut v = vec![
            ("a".to_string(), 1.0),
            ("c".to_string(), 1.0),
            ("b".to_string(), 2.0),
        ];
        trec_order(&mut v);
        let order: Vec<&str> = v.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(order, ["b", "c", "a"]);
    }
}

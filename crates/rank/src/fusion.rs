//! Multi-signal fusion: relevance (cross-encoder probability), freshness, source authority and
//! diversity folded into one score with a breakdown per result, and abstention below a
//! relevance threshold.
//!
//! - relevance: the reranker's score in [0, 1];
//! - freshness: `1 / (1 + age_days / half_life_days)`; a document without a date gets the
//!   neutral 0.5 (the freshness of a document one half-life old);
//! - authority: the configured weight of the document's `source` (default 0.5);
//! - diversity: 1 for the first result of a parent document (`doc_id`), 0 for later chunks of a
//!   parent already ranked higher (greedy selection); or, with `mmr_lambda`, MMR on doc_id
//!   overlap.
//!
//! Total = w_rel * relevance + w_fresh * freshness + w_auth * authority + w_div * diversity,
//! default weights 0.6 / 0.15 / 0.15 / 0.1.

use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

/// Weights of the signals.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct FusionWeights {
    /// Cross-encoder relevance.
    pub relevance: f64,
    /// Freshness.
    pub freshness: f64,
    /// Source authority.
    pub authority: f64,
    /// Diversity.
    pub diversity: f64,
}

impl Default for FusionWeights {
    fn default() -> Self {
        FusionWeights {
            relevance: 0.6,
            freshness: 0.15,
            authority: 0.15,
            diversity: 0.1,
        }
    }
}

/// Fusion settings (TOML or per request); every field has a default.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct FusionConfig {
    /// Signal weights.
    pub weights: FusionWeights,
    /// Freshness half-life in days.
    pub half_life_days: f64,
    /// Authority per `source`.
    pub authority: HashMap<String, f64>,
    /// Authority of sources not listed.
    pub default_authority: f64,
    /// Freshness of documents without a date.
    pub missing_date_freshness: f64,
    /// Use MMR with this lambda instead of the doc_id penalty.
    pub mmr_lambda: Option<f64>,
    /// Keep some of the first stage's order: the relevance signal of the weighted sum becomes
    /// a weighted reciprocal-rank fusion of the first stage's and the reranker's ranks (fitted
    /// on labelled data by `crossrank eval --tune-fusion`). None: the reranker's score alone.
    pub first_stage: Option<FirstStageFusion>,
}

/// A weighted reciprocal-rank fusion of the first stage's rank and the reranker's.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct FirstStageFusion {
    /// The RRF constant k (larger: flatter).
    pub rrf_k: f64,
    /// Weight of the reranker's rank, 0..1 (1: the reranker's order; 0: the first stage's).
    pub reranker_weight: f64,
}

impl Default for FirstStageFusion {
    fn default() -> Self {
        FirstStageFusion {
            rrf_k: 60.0,
            reranker_weight: 0.5,
        }
    }
}

impl FirstStageFusion {
    /// The fused signal of a candidate at 1-based ranks `first` and `reranked`, scaled so that
    /// rank 1 in both is 1.
    pub fn score(&self, first: usize, reranked: usize) -> f64 {
        let k = self.rrf_k.max(0.0);
        let w = self.reranker_weight.clamp(0.0, 1.0);
        (w / (k + reranked as f64) + (1.0 - w) / (k + first as f64)) * (k + 1.0)
    }
}

/// 1-based ranks of `values`, highest first; ties by position.
pub fn ranks(values: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    let mut rank = vec![0; values.len()];
    for (r, i) in order.into_iter().enumerate() {
        rank[i] = r + 1;
    }
    rank
}

impl Default for FusionConfig {
    fn default() -> Self {
        FusionConfig {
            weights: FusionWeights::default(),
            half_life_days: 30.0,
            authority: HashMap::new(),
            default_authority: 0.5,
            missing_date_freshness: 0.5,
            mmr_lambda: None,
            first_stage: None,
        }
    }
}

/// What fusion needs to know about a candidate.
#[derive(Debug, Clone)]
pub struct FusionInput {
    /// Caller's id.
    pub id: String,
    /// Parent document (chunks of one document share it).
    pub doc_id: String,
    /// Reranker score in [0, 1].
    pub relevance: f64,
    /// Age in days at query time, if the document has a date.
    pub age_days: Option<f64>,
    /// Source name, if any.
    pub source: Option<String>,
}

/// Every signal of one result.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Breakdown {
    /// Reranker score.
    pub relevance: f64,
    /// Freshness signal.
    pub freshness: f64,
    /// Authority signal.
    pub authority: f64,
    /// Diversity signal.
    pub diversity: f64,
    /// Weighted total.
    pub score: f64,
    /// With `first_stage` fusion: the fused rank signal that stood for relevance in the sum.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rank_fusion: Option<f64>,
}

/// A fused result.
#[derive(Debug, Clone, Serialize)]
pub struct Fused {
    /// Position in the input.
    pub index: usize,
    /// Caller's id.
    pub id: String,
    /// The signals and total.
    pub breakdown: Breakdown,
}

impl FusionConfig {
    /// Freshness of a document `age_days` old.
    pub fn freshness(&self, age_days: Option<f64>) -> f64 {
        match age_days {
            Some(a) => 1.0 / (1.0 + a.max(0.0) / self.half_life_days.max(1e-9)),
            None => self.missing_date_freshness,
        }
    }

    /// Authority of a source.
    pub fn authority_of(&self, source: Option<&str>) -> f64 {
        source
            .and_then(|s| self.authority.get(s))
            .copied()
            .unwrap_or(self.default_authority)
    }

    /// Ranks candidates (given in first-stage order) by the fused score, greedily so that
    /// diversity sees what is already ranked above. Ties keep input order.
    pub fn fuse(&self, items: &[FusionInput]) -> Vec<Fused> {
        let w = &self.weights;
        // What stands for relevance in the sum: the reranker's score, or its fusion with the
        // first stage's order.
        let fused: Option<Vec<f64>> = self.first_stage.map(|f| {
            let relevance: Vec<f64> = items.iter().map(|c| c.relevance).collect();
            ranks(&relevance)
                .iter()
                .enumerate()
                .map(|(i, &r)| f.score(i + 1, r))
                .collect()
        });
        let base: Vec<(f64, f64)> = items
            .iter()
            .map(|c| {
                (
                    self.freshness(c.age_days),
                    self.authority_of(c.source.as_deref()),
                )
            })
            .collect();
        let mut left: Vec<usize> = (0..items.len()).collect();
        let mut seen: HashSet<&str> = HashSet::new();
        let mut out = Vec::with_capacity(items.len());
        while !left.is_empty() {
            let mut best: Option<(usize, Breakdown)> = None;
            for (pos, &i) in left.iter().enumerate() {
                let c = &items[i];
                let signal = fused.as_ref().map_or(c.relevance, |f| f[i]);
                let (freshness, authority) = base[i];
                let dup = seen.contains(c.doc_id.as_str());
                let diversity = if dup { 0.0 } else { 1.0 };
                let score = match self.mmr_lambda {
                    Some(l) => {
                        let quality = w.relevance * signal
                            + w.freshness * freshness
                            + w.authority * authority;
                        l * quality - (1.0 - l) * if dup { 1.0 } else { 0.0 }
                    }
                    None => {
                        w.relevance * signal
                            + w.freshness * freshness
                            + w.authority * authority
                            + w.diversity * diversity
                    }
                };
                if best.as_ref().is_none_or(|(_, b)| score > b.score) {
                    best = Some((
                        pos,
                        Breakdown {
                            relevance: c.relevance,
                            freshness,
                            authority,
                            diversity,
                            score,
                            rank_fusion: fused.as_ref().map(|f| f[i]),
                        },
                    ));
                }
            }
            let Some((pos, breakdown)) = best else { break };
            let i = left.remove(pos);
            seen.insert(items[i].doc_id.as_str());
            out.push(Fused {
                index: i,
                id: items[i].id.clone(),
                breakdown,
            });
        }
        out
    }
}

/// The abstention decision for a ranked list.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Abstention {
    /// Whether any candidate reaches `min_score`.
    pub answerable: bool,
    /// The best candidate's relevance.
    pub best_score: f64,
    /// Its position in the input.
    pub best_index: Option<usize>,
}

/// Decides whether any relevance reaches `min_score`.
pub fn abstain(relevances: &[f64], min_score: f64) -> Abstention {
    let best = relevances
        .iter()
        .copied()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1));
    match best {
        Some((i, s)) => Abstention {
            answerable: s >= min_score,
            best_score: s,
            best_index: Some(i),
        },
        None => Abstention {
            answerable: false,
            best_score: 0.0,
            best_index: None,
        },
    }
}

/// One point of a precision / coverage curve.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CurvePoint {
    /// Threshold on the best candidate's score.
    pub threshold: f64,
    /// Share of answered questions whose best candidate is relevant.
    pub precision: f64,
    /// Share of questions answered.
    pub coverage: f64,
}

/// Precision / coverage of answering only when the best score reaches each threshold.
/// `questions` holds (best candidate's score, whether it is relevant).
pub fn precision_coverage(questions: &[(f64, bool)]) -> Vec<CurvePoint> {
    let mut sorted = questions.to_vec();
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut out = Vec::new();
    let mut correct = 0usize;
    for (k, (s, ok)) in sorted.iter().enumerate() {
        if *ok {
            correct += 1;
        }
        // Emit a point at the last of equal scores.
        if sorted.get(k + 1).is_none_or(|n| n.0 < *s) {
            out.push(CurvePoint {
                threshold: *s,
                precision: correct as f64 / (k + 1) as f64,
                coverage: (k + 1) as f64 / sorted.len() as f64,
            });
        }
    }
    out
}

/// Wilson score lower bound of a proportion `p` over `n` trials at `z` standard deviations.
pub fn wilson_lower(p: f64, n: usize, z: f64) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let n = n as f64;
    let z2 = z * z;
    (p + z2 / (2.0 * n) - z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt()) / (1.0 + z2 / n)
}

/// The threshold with the widest coverage whose precision reaches `target` with confidence:
/// the Wilson lower bound at `z` (0 = the observed precision; 1.0 = about 84% one-sided) must
/// be >= `target`, so that a threshold picked on a few hundred questions holds on new ones.
pub fn calibrate(questions: &[(f64, bool)], target: f64, z: f64) -> Option<CurvePoint> {
    let n = questions.len();
    precision_coverage(questions)
        .into_iter()
        .filter(|p| {
            wilson_lower(p.precision, (p.coverage * n as f64).round() as usize, z) >= target - 1e-12
        })
        .max_by(|a, b| a.coverage.total_cmp(&b.coverage))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, doc: &str, rel: f64, age: Option<f64>, source: Option<&str>) -> FusionInput {
        FusionInput {
            id: id.into(),
            doc_id: doc.into(),
            relevance: rel,
            age_days: age,
            source: source.map(String::from),
        }
    }

    fn order(f: &[Fused]) -> Vec<&str> {
        f.iter().map(|x| x.id.as_str()).collect()
    }

    #[test]
    fn freshness_changes_the_order() {
        let c = FusionConfig::default();
        // Same relevance and source; b is fresh, a is a year old.
        let items = [
            item("a", "A", 0.80, Some(365.0), None),
            item("b", "B", 0.78, Some(0.0), None),
        ];
        let f = c.fuse(&items);
        assert_eq!(order(&f), ["b", "a"]);
        assert!((f[0].breakdown.freshness - 1.0).abs() < 1e-12);
        assert!((f[1].breakdown.freshness - 1.0 / (1.0 + 365.0 / 30.0)).abs() < 1e-12);
        let want_b = 0.6 * 0.78 + 0.15 * 1.0 + 0.15 * 0.5 + 0.1;
        assert!((f[0].breakdown.score - want_b).abs() < 1e-12);
        // Without the freshness weight, relevance wins.
        let c2 = FusionConfig {
            weights: FusionWeights {
                freshness: 0.0,
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(order(&c2.fuse(&items)), ["a", "b"]);
        // A missing date is neutral (0.5).
        assert_eq!(c.freshness(None), 0.5);
        assert!((c.freshness(Some(30.0)) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn authority_changes_the_order() {
        let mut c = FusionConfig::default();
        c.authority.insert("docs.rust-lang.org".into(), 1.0);
        c.authority.insert("forum".into(), 0.1);
        let items = [
            item("forum-post", "F", 0.70, None, Some("forum")),
            item("manual", "M", 0.65, None, Some("docs.rust-lang.org")),
        ];
        let f = c.fuse(&items);
        assert_eq!(order(&f), ["manual", "forum-post"]);
        assert_eq!(f[0].breakdown.authority, 1.0);
        assert_eq!(f[1].breakdown.authority, 0.1);
        assert!(
            (f[0].breakdown.score - (0.6 * 0.65 + 0.15 * 0.5 + 0.15 * 1.0 + 0.1)).abs() < 1e-12
        );
        assert_eq!(c.authority_of(Some("unknown")), 0.5);
    }

    #[test]
    fn diversity_demotes_a_second_chunk_of_the_same_document() {
        let c = FusionConfig::default();
        let items = [
            item("d1#0", "d1", 0.90, None, None),
            item("d1#1", "d1", 0.85, None, None),
            item("d2#0", "d2", 0.80, None, None),
        ];
        let f = c.fuse(&items);
        assert_eq!(order(&f), ["d1#0", "d2#0", "d1#1"]);
        assert_eq!(
            f.iter().map(|x| x.breakdown.diversity).collect::<Vec<_>>(),
            vec![1.0, 1.0, 0.0]
        );
        assert!((f[2].breakdown.score - (0.6 * 0.85 + 0.15 * 0.5 + 0.15 * 0.5)).abs() < 1e-12);
        // With no diversity weight, the chunks stay together.
        let c2 = FusionConfig {
            weights: FusionWeights {
                diversity: 0.0,
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(order(&c2.fuse(&items)), ["d1#0", "d1#1", "d2#0"]);
        // MMR with a low lambda also pushes the duplicate down.
        let c3 = FusionConfig {
            mmr_lambda: Some(0.5),
            ..Default::default()
        };
        assert_eq!(order(&c3.fuse(&items)), ["d1#0", "d2#0", "d1#1"]);
    }

    #[test]
    fn first_stage_fusion_moves_between_the_two_orders() {
        // First-stage order a, b, c, d; the reranker prefers d, c, b, a.
        let items: Vec<FusionInput> = [("a", 0.1), ("b", 0.2), ("c", 0.3), ("d", 0.9)]
            .iter()
            .map(|&(id, r)| item(id, id, r, None, None))
            .collect();
        let order = |w: f64, k: f64| -> Vec<String> {
            let c = FusionConfig {
                weights: FusionWeights {
                    relevance: 1.0,
                    freshness: 0.0,
                    authority: 0.0,
                    diversity: 0.0,
                },
                first_stage: Some(FirstStageFusion {
                    rrf_k: k,
                    reranker_weight: w,
                }),
                ..Default::default()
            };
            c.fuse(&items).into_iter().map(|f| f.id).collect()
        };
        assert_eq!(order(1.0, 60.0), ["d", "c", "b", "a"]);
        assert_eq!(order(0.0, 60.0), ["a", "b", "c", "d"]);
        // Equal weights and a small k: the extremes tie at 1/(k+1) + 1/(k+4) and keep input
        // order; the middle ones tie below them.
        assert_eq!(order(0.5, 1.0), ["a", "d", "b", "c"]);
        let f = FirstStageFusion {
            rrf_k: 60.0,
            reranker_weight: 0.5,
        };
        assert!((f.score(1, 1) - 1.0).abs() < 1e-12);
        assert_eq!(ranks(&[0.2, 0.9, 0.2]), vec![2, 1, 3]);
        // The breakdown keeps the reranker's probability beside the fused signal.
        let c = FusionConfig {
            first_stage: Some(f),
            ..Default::default()
        };
        let top = &c.fuse(&items)[0];
        assert!(top.breakdown.rank_fusion.is_some());
        assert_eq!(top.breakdown.relevance, items[top.index].relevance);
    }

    #[test]
    fn abstention_and_calibration() {
        let a = abstain(&[0.1, 0.3, 0.2], 0.5);
        assert_eq!(
            a,
            Abstention {
                answerable: false,
                best_score: 0.3,
                best_index: Some(1)
            }
        );
        assert!(abstain(&[0.1, 0.7], 0.5).answerable);
        assert!(!abstain(&[], 0.5).answerable);
        let q = [
            (0.9, true),
            (0.8, true),
            (0.7, false),
            (0.6, true),
            (0.2, false),
        ];
        let curve = precision_coverage(&q);
        assert_eq!(curve.len(), 5);
        assert_eq!(
            curve[2],
            CurvePoint {
                threshold: 0.7,
                precision: 2.0 / 3.0,
                coverage: 0.6
            }
        );
        let t = calibrate(&q, 0.75, 0.0).unwrap();
        assert_eq!((t.threshold, t.precision, t.coverage), (0.6, 0.75, 0.8));
        assert!(calibrate(&[(0.5, false)], 0.9, 0.0).is_none());
        // With confidence, few answers are not enough: 2 of 2 correct has a Wilson bound < 0.75.
        assert!(wilson_lower(1.0, 2, 1.0) < 0.75);
        assert_eq!(calibrate(&q, 0.75, 1.0), None);
        assert!((wilson_lower(0.5, 100, 1.96) - 0.4038).abs() < 1e-3);
    }
}

//! Hybrid retrieval: reciprocal rank fusion (k = 60 by default) or a weighted sum of min-max
//! normalised scores, over the BM25 and dense lists.

use crate::{Result, RetrieveError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// How to combine the lists; in JSON `{"mode": "rrf", "k": 60}` or
/// `{"mode": "weighted", "bm25_weight": 0.3}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum HybridMode {
    /// sum over lists of 1 / (k + rank).
    Rrf {
        /// The k constant.
        k: f64,
    },
    /// w * bm25_norm + (1 - w) * dense_norm (min-max normalised per list; absent = 0).
    Weighted {
        /// Weight of BM25.
        bm25_weight: f64,
    },
}

impl Default for HybridMode {
    fn default() -> Self {
        HybridMode::Rrf { k: 60.0 }
    }
}

impl HybridMode {
    /// Refuses a k that is not a positive finite number and a weight outside [0, 1].
    pub fn validate(self) -> Result<Self> {
        match self {
            HybridMode::Rrf { k } if !(k.is_finite() && k > 0.0) => Err(RetrieveError::Invalid(
                format!("hybrid.k must be a positive number, not {k}"),
            )),
            HybridMode::Weighted { bm25_weight } if !(0.0..=1.0).contains(&bm25_weight) => {
                Err(RetrieveError::Invalid(format!(
                    "hybrid.bm25_weight must be from 0 to 1, not {bm25_weight}"
                )))
            }
            m => Ok(m),
        }
    }
}

/// Fuses two ranked lists (best first) into one, best first; ties by id.
pub fn fuse(
    bm25: &[(String, f32)],
    dense: &[(String, f32)],
    mode: HybridMode,
    k: usize,
) -> Vec<(String, f32)> {
    let mut acc: HashMap<&str, f64> = HashMap::new();
    match mode {
        HybridMode::Rrf { k: c } => {
            for list in [bm25, dense] {
                for (r, (id, _)) in list.iter().enumerate() {
                    *acc.entry(id).or_default() += 1.0 / (c + (r + 1) as f64);
                }
            }
        }
        HybridMode::Weighted { bm25_weight } => {
            for (list, w) in [(bm25, bm25_weight), (dense, 1.0 - bm25_weight)] {
                let (lo, hi) = list
                    .iter()
                    .fold((f32::MAX, f32::MIN), |a, x| (a.0.min(x.1), a.1.max(x.1)));
                for (id, s) in list {
                    let n = if hi > lo { (s - lo) / (hi - lo) } else { 1.0 };
                    *acc.entry(id).or_default() += w * n as f64;
                }
            }
        }
    }
    let mut out: Vec<(String, f32)> = acc
        .into_iter()
        .map(|(id, s)| (id.to_string(), s as f32))
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out.truncate(k);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(ids: &[&str]) -> Vec<(String, f32)> {
        ids.iter()
            .enumerate()
            .map(|(i, s)| (s.to_string(), 10.0 - i as f32))
            .collect()
    }

    #[test]
    fn rrf_rewards_agreement() {
        let f = fuse(
            &l(&["a", "b", "c"]),
            &l(&["d", "b", "e"]),
            HybridMode::default(),
            10,
        );
        assert_eq!(f[0].0, "b"); // 1/62 + 1/62 beats 1/61
        assert_eq!(f.len(), 5);
        assert!((f[0].1 as f64 - 2.0 / 62.0).abs() < 1e-6);
        let w = fuse(
            &l(&["a", "b"]),
            &l(&["b", "a"]),
            HybridMode::Weighted { bm25_weight: 0.9 },
            1,
        );
        assert_eq!(w[0].0, "a");
    }
}

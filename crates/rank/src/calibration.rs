//! Calibrated scores: a map from a model's logit to the probability that the pair is relevant,
//! fitted on labelled pairs (temperature scaling, Platt scaling or isotonic regression), saved
//! as JSON beside the model and applied by [`Calibrated`] in front of any reranker.
//!
//! A model's sigmoid is a probability only in name: a `min_score` chosen for one model means
//! nothing for another, and a fine-tune's scores drift from the frequencies it was trained on.
//! After calibration, among pairs scored 0.7 about 70% are relevant on data like the fitting
//! data, which is what thresholds and fusion weights assume.

use crate::{RankError, Reranker, ScoreKind, ScoreOptions, Scored};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The file name looked for beside a model.
pub const FILE_NAME: &str = "calibration.json";

/// How the map is fitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// sigmoid(logit / T): one parameter, keeps the model's ranking and its shape.
    Temperature,
    /// sigmoid(a * logit + b): logistic regression on the logit.
    Platt,
    /// A monotone step function fitted by pool-adjacent-violators, interpolated linearly.
    Isotonic,
}

/// A fitted map from logit to probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "lowercase")]
pub enum Calibration {
    /// `sigmoid(logit / temperature)`.
    Temperature {
        /// T > 0.
        temperature: f64,
    },
    /// `sigmoid(a * logit + b)`.
    Platt {
        /// Slope.
        a: f64,
        /// Intercept.
        b: f64,
    },
    /// Piecewise linear through `(logits[i], probabilities[i])`, flat outside; both ascending.
    Isotonic {
        /// Block centres, ascending.
        logits: Vec<f64>,
        /// Their probabilities, non-decreasing.
        probabilities: Vec<f64>,
    },
}

/// A calibration file: the map and what it was fitted on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationFile {
    /// The map.
    #[serde(flatten)]
    pub calibration: Calibration,
    /// The model it was fitted for (a directory or spec, for people reading the file).
    pub model: String,
    /// Labelled pairs it was fitted on.
    pub pairs: usize,
    /// Where they came from.
    pub fitted_on: String,
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Mean negative log-likelihood of `p(logit)` on `(logit, relevant)` pairs.
fn nll(pairs: &[(f64, bool)], p: impl Fn(f64) -> f64) -> f64 {
    let eps = 1e-12;
    pairs
        .iter()
        .map(|&(x, y)| {
            let q = p(x).clamp(eps, 1.0 - eps);
            if y {
                -q.ln()
            } else {
                -(1.0 - q).ln()
            }
        })
        .sum::<f64>()
        / pairs.len().max(1) as f64
}

impl Calibration {
    /// Fits `method` on `(logit, relevant)` pairs; needs both classes present.
    pub fn fit(method: Method, pairs: &[(f64, bool)]) -> Result<Calibration, RankError> {
        let positives = pairs.iter().filter(|p| p.1).count();
        if positives == 0 || positives == pairs.len() || pairs.iter().any(|p| !p.0.is_finite()) {
            return Err(RankError::Unsupported(format!(
                "calibration needs finite scores of both relevant and irrelevant pairs \
                 ({positives} relevant of {})",
                pairs.len()
            )));
        }
        Ok(match method {
            Method::Temperature => {
                // NLL is unimodal in log T: golden-section search over T in [0.01, 100].
                let f = |lt: f64| nll(pairs, |x| sigmoid(x / lt.exp()));
                let (mut lo, mut hi) = (0.01f64.ln(), 100f64.ln());
                let g = (5f64.sqrt() - 1.0) / 2.0;
                for _ in 0..100 {
                    let (a, b) = (hi - g * (hi - lo), lo + g * (hi - lo));
                    if f(a) < f(b) {
                        hi = b;
                    } else {
                        lo = a;
                    }
                }
                Calibration::Temperature {
                    temperature: ((lo + hi) / 2.0).exp(),
                }
            }
            Method::Platt => fit_platt(pairs),
            Method::Isotonic => fit_isotonic(pairs),
        })
    }

    /// The calibrated probability of a logit.
    pub fn apply(&self, logit: f64) -> f64 {
        match self {
            Calibration::Temperature { temperature } => sigmoid(logit / temperature),
            Calibration::Platt { a, b } => sigmoid(a * logit + b),
            Calibration::Isotonic {
                logits,
                probabilities,
            } => {
                let i = logits.partition_point(|&x| x <= logit);
                match i {
                    0 => probabilities.first().copied().unwrap_or(0.5),
                    i if i == logits.len() => probabilities[i - 1],
                    i => {
                        let (x0, x1) = (logits[i - 1], logits[i]);
                        let (y0, y1) = (probabilities[i - 1], probabilities[i]);
                        y0 + (y1 - y0) * (logit - x0) / (x1 - x0)
                    }
                }
            }
        }
    }
}

/// Logistic regression of the label on the logit by Newton's method, with Platt's smoothed
/// targets (N+ + 1) / (N+ + 2) and 1 / (N- + 2) against overfitting.
fn fit_platt(pairs: &[(f64, bool)]) -> Calibration {
    let pos = pairs.iter().filter(|p| p.1).count() as f64;
    let neg = pairs.len() as f64 - pos;
    let (hi, lo) = ((pos + 1.0) / (pos + 2.0), 1.0 / (neg + 2.0));
    let (mut a, mut b) = (1.0f64, 0.0f64);
    for _ in 0..100 {
        let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for &(x, y) in pairs {
            let p = sigmoid(a * x + b);
            let t = if y { hi } else { lo };
            let w = (p * (1.0 - p)).max(1e-12);
            ga += (p - t) * x;
            gb += p - t;
            haa += w * x * x;
            hab += w * x;
            hbb += w;
        }
        let det = haa * hbb - hab * hab;
        if det.abs() < 1e-18 {
            break;
        }
        let da = (hbb * ga - hab * gb) / det;
        let db = (haa * gb - hab * ga) / det;
        a -= da;
        b -= db;
        if da.abs() < 1e-10 && db.abs() < 1e-10 {
            break;
        }
    }
    Calibration::Platt { a, b }
}

/// Pool-adjacent-violators on the pairs sorted by logit; each block becomes a point at its
/// mean logit with its share of relevant pairs.
fn fit_isotonic(pairs: &[(f64, bool)]) -> Calibration {
    let mut sorted = pairs.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    // (sum of logits, relevant, count) per block.
    let mut blocks: Vec<(f64, f64, f64)> = Vec::new();
    for (x, y) in sorted {
        blocks.push((x, y as u8 as f64, 1.0));
        while blocks.len() > 1 {
            let n = blocks.len();
            let (a, b) = (blocks[n - 2], blocks[n - 1]);
            if a.1 / a.2 < b.1 / b.2 {
                break;
            }
            blocks.truncate(n - 2);
            blocks.push((a.0 + b.0, a.1 + b.1, a.2 + b.2));
        }
    }
    Calibration::Isotonic {
        logits: blocks.iter().map(|b| b.0 / b.2).collect(),
        probabilities: blocks.iter().map(|b| b.1 / b.2).collect(),
    }
}

/// One bin of a reliability diagram.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bin {
    /// Lower edge of the predicted probability.
    pub lo: f64,
    /// Pairs in the bin.
    pub count: usize,
    /// Mean predicted probability.
    pub confidence: f64,
    /// Share relevant.
    pub accuracy: f64,
}

/// A reliability diagram of `(probability, relevant)` pairs in `bins` equal-width bins and
/// its expected calibration error (the count-weighted mean |accuracy - confidence|).
pub fn reliability(pairs: &[(f64, bool)], bins: usize) -> (Vec<Bin>, f64) {
    let bins = bins.max(1);
    let mut acc = vec![(0.0f64, 0.0f64, 0usize); bins];
    for &(p, y) in pairs {
        let i = ((p * bins as f64) as usize).min(bins - 1);
        acc[i].0 += p;
        acc[i].1 += y as u8 as f64;
        acc[i].2 += 1;
    }
    let n = pairs.len().max(1) as f64;
    let mut ece = 0.0;
    let out = acc
        .iter()
        .enumerate()
        .map(|(i, &(sp, sy, c))| {
            let (conf, accu) = if c == 0 {
                (0.0, 0.0)
            } else {
                (sp / c as f64, sy / c as f64)
            };
            ece += (accu - conf).abs() * c as f64 / n;
            Bin {
                lo: i as f64 / bins as f64,
                count: c,
                confidence: conf,
                accuracy: accu,
            }
        })
        .collect();
    (out, ece)
}

impl CalibrationFile {
    /// Reads a calibration file.
    pub fn read(path: &Path) -> Result<CalibrationFile, RankError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            RankError::Unsupported(format!("cannot read calibration {}: {e}", path.display()))
        })?;
        let file: CalibrationFile = serde_json::from_str(&text).map_err(|e| {
            RankError::Unsupported(format!("calibration {} is not valid: {e}", path.display()))
        })?;
        file.check().map_err(|why| {
            RankError::Unsupported(format!("calibration {}: {why}", path.display()))
        })?;
        Ok(file)
    }

    /// The file beside a model directory, if there is one.
    pub fn beside(model_dir: &Path) -> Result<Option<CalibrationFile>, RankError> {
        let p = model_dir.join(FILE_NAME);
        if p.is_file() {
            Self::read(&p).map(Some)
        } else {
            Ok(None)
        }
    }

    fn check(&self) -> Result<(), String> {
        match &self.calibration {
            Calibration::Temperature { temperature }
                if !(temperature.is_finite() && *temperature > 0.0) =>
            {
                Err(format!("temperature {temperature} must be finite and > 0"))
            }
            Calibration::Platt { a, b } if !(a.is_finite() && b.is_finite()) => {
                Err("a and b must be finite".into())
            }
            Calibration::Isotonic {
                logits,
                probabilities,
            } => {
                let sorted = logits.windows(2).all(|w| w[0] <= w[1])
                    && probabilities.windows(2).all(|w| w[0] <= w[1]);
                if logits.is_empty()
                    || logits.len() != probabilities.len()
                    || !sorted
                    || probabilities.iter().any(|p| !(0.0..=1.0).contains(p))
                {
                    Err("isotonic points must be non-empty, as many logits as probabilities, both ascending, probabilities in [0, 1]".into())
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }
}

/// A reranker whose scores are calibrated probabilities (the logit is the model's own).
pub struct Calibrated<R> {
    inner: R,
    calibration: Calibration,
}

impl<R: Reranker> Calibrated<R> {
    /// `inner` with `calibration` applied to its logits.
    pub fn new(inner: R, calibration: Calibration) -> Self {
        Calibrated { inner, calibration }
    }
}

impl<R: Reranker> Reranker for Calibrated<R> {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn score_kind(&self) -> ScoreKind {
        ScoreKind::Probability
    }
    fn score_detailed(
        &self,
        query: &str,
        documents: &[&str],
        opts: &ScoreOptions,
    ) -> Result<Scored, RankError> {
        let mut s = self.inner.score_detailed(query, documents, opts)?;
        for r in &mut s.ranked {
            r.score = self.calibration.apply(r.logit as f64) as f32;
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pairs whose true probability is sigmoid(logit / 2): an overconfident model.
    fn overconfident(n: usize) -> Vec<(f64, bool)> {
        let mut rng = 0x2545F4914F6CDD1Du64;
        (0..n)
            .map(|i| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let x = -6.0 + 12.0 * (i as f64 / n as f64);
                let u = (rng % 1_000_000) as f64 / 1e6;
                (x, u < sigmoid(x / 2.0))
            })
            .collect()
    }

    #[test]
    fn each_method_recovers_an_overconfident_models_probabilities() {
        let pairs = overconfident(20_000);
        let raw: Vec<(f64, bool)> = pairs.iter().map(|&(x, y)| (sigmoid(x), y)).collect();
        let (_, ece_raw) = reliability(&raw, 10);
        for m in [Method::Temperature, Method::Platt, Method::Isotonic] {
            let c = Calibration::fit(m, &pairs).unwrap();
            let cal: Vec<(f64, bool)> = pairs.iter().map(|&(x, y)| (c.apply(x), y)).collect();
            let (_, ece) = reliability(&cal, 10);
            assert!(ece < ece_raw / 2.0, "{m:?}: ECE {ece} vs raw {ece_raw}");
            // Monotone in the logit.
            let mut prev = -1.0;
            for i in -80..=80 {
                let p = c.apply(i as f64 / 10.0);
                assert!(p >= prev - 1e-12, "{m:?} not monotone at {i}");
                prev = p;
            }
        }
        match Calibration::fit(Method::Temperature, &pairs).unwrap() {
            Calibration::Temperature { temperature } => {
                assert!((temperature - 2.0).abs() < 0.15, "T = {temperature}")
            }
            other => panic!("{other:?}"),
        }
        match Calibration::fit(Method::Platt, &pairs).unwrap() {
            Calibration::Platt { a, b } => {
                assert!((a - 0.5).abs() < 0.05 && b.abs() < 0.1, "a {a} b {b}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn one_class_is_refused_and_files_round_trip_and_are_checked() {
        assert!(Calibration::fit(Method::Platt, &[(1.0, true), (2.0, true)]).is_err());
        let file = CalibrationFile {
            calibration: Calibration::Isotonic {
                logits: vec![-1.0, 0.0, 2.0],
                probabilities: vec![0.1, 0.4, 0.9],
            },
            model: "m".into(),
            pairs: 3,
            fitted_on: "test".into(),
        };
        let dir = std::env::temp_dir().join(format!("crossrank-cal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(FILE_NAME), serde_json::to_string(&file).unwrap()).unwrap();
        let back = CalibrationFile::beside(&dir).unwrap().unwrap();
        assert_eq!(back, file);
        assert_eq!(back.calibration.apply(-5.0), 0.1);
        assert!((back.calibration.apply(1.0) - 0.65).abs() < 1e-12);
        assert_eq!(back.calibration.apply(9.0), 0.9);
        std::fs::write(
            dir.join(FILE_NAME),
            r#"{"method": "temperature", "temperature": -1, "model": "m", "pairs": 1, "fitted_on": "x"}"#,
        )
        .unwrap();
        let e = CalibrationFile::beside(&dir).unwrap_err().to_string();
        assert!(e.contains("must be finite and > 0"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! `crossrank calibrate`: pick the abstention threshold (`min_score`) for a target precision
//! from labelled data, and print the precision / coverage curve; with `--fit`, first fit a
//! calibration of the model's scores on every labelled pair and write it beside the model
//! (reliability before and after on `--check`).

use crate::model_spec::ModelArgs;
use anyhow::{bail, Context, Result};
use crossrank_eval::datasets::{self, RerankSet};
use crossrank_eval::metrics::MetricSpec;
use crossrank_eval::tune::{tune, TunedFusion};
use crossrank_rank::calibration::{reliability, Calibration, CalibrationFile, Method, FILE_NAME};
use crossrank_rank::fusion::{calibrate, precision_coverage, wilson_lower, CurvePoint};
use crossrank_rank::{Ranked, Reranker};
use std::path::{Path, PathBuf};

/// Arguments of `calibrate`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Labelled questions to calibrate on, WikiQA tsv[.gz] (e.g. the dev split).
    #[arg(
        long,
        conflicts_with = "labelled",
        required_unless_present = "labelled"
    )]
    pub wikiqa: Option<PathBuf>,
    /// Labelled questions to calibrate on, JSONL: {"query", "documents": [...], "relevant":
    /// [indices]} per line (no relevant index: the question should be declined).
    #[arg(long)]
    pub labelled: Option<PathBuf>,
    /// WikiQA only: keep the questions without a correct sentence (answering them counts as
    /// an error). By default they are left out, as in WikiQA's usual setting.
    #[arg(long)]
    pub include_unanswerable: bool,
    /// Precision wanted among answered questions.
    #[arg(long, default_value_t = 0.8)]
    pub target_precision: f64,
    /// Confidence of the precision: the Wilson lower bound at this many standard deviations
    /// must reach the target (0 = observed precision).
    #[arg(long, default_value_t = 1.0)]
    pub confidence_z: f64,
    /// Labelled questions to check the threshold on, in the same format (e.g. WikiQA test).
    #[arg(long)]
    pub check: Option<PathBuf>,
    /// Fit a calibration of the scores on every labelled pair (temperature, platt or
    /// isotonic) and write it to --output or beside the model; the threshold is then chosen on
    /// calibrated scores.
    #[arg(long, value_enum)]
    pub fit: Option<FitArg>,
    /// Where --fit writes the calibration (default: calibration.json in the model directory,
    /// where every command and the server pick it up).
    #[arg(long, requires = "fit")]
    pub output: Option<PathBuf>,
    /// With --fit and --check: write calibration.html (the reliability diagram before and
    /// after on the check set) into this directory.
    #[arg(long, requires_all = ["fit", "check"])]
    pub report: Option<PathBuf>,
    /// Also fit how much of the candidates' given (first-stage) order to keep, as `eval
    /// --tune-fusion` does: on every other labelled question, reported on the rest.
    #[arg(long)]
    pub tune_fusion: bool,
    /// With --tune-fusion: write the fitted setting as a fusion TOML here.
    #[arg(long, requires = "tune_fusion")]
    pub fusion_output: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `--fit` values.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FitArg {
    /// sigmoid(logit / T).
    Temperature,
    /// sigmoid(a * logit + b).
    Platt,
    /// Monotone step function (pool-adjacent-violators).
    Isotonic,
}

impl From<FitArg> for Method {
    fn from(f: FitArg) -> Method {
        match f {
            FitArg::Temperature => Method::Temperature,
            FitArg::Platt => Method::Platt,
            FitArg::Isotonic => Method::Isotonic,
        }
    }
}

/// Every candidate's score of every question, input order.
fn score_all(set: &RerankSet, reranker: &dyn Reranker) -> Result<Vec<Vec<Ranked>>> {
    let mut out = Vec::with_capacity(set.queries.len());
    for q in &set.queries {
        let docs: Vec<&str> = q.candidates.iter().map(|c| c.text.as_str()).collect();
        out.push(reranker.score(&q.text, &docs)?);
    }
    Ok(out)
}

/// Whether candidate `i` of question `q` is relevant.
fn relevant(set: &RerankSet, q: usize, i: usize) -> bool {
    let q = &set.queries[q];
    set.qrels
        .get(&q.qid)
        .and_then(|j| j.get(&q.candidates[i].docid))
        .is_some_and(|&g| g > 0)
}

/// (logit, relevant) of every labelled pair.
fn pairs(set: &RerankSet, scores: &[Vec<Ranked>]) -> Vec<(f64, bool)> {
    scores
        .iter()
        .enumerate()
        .flat_map(|(q, s)| {
            s.iter()
                .map(move |r| (r.logit as f64, relevant(set, q, r.index)))
        })
        .collect()
}

/// (best candidate's score under `score`, whether it is relevant) per question.
fn best(
    set: &RerankSet,
    scores: &[Vec<Ranked>],
    score: &dyn Fn(&Ranked) -> f64,
) -> Vec<(f64, bool)> {
    scores
        .iter()
        .enumerate()
        .filter_map(|(q, s)| {
            let b = s.iter().max_by(|a, b| score(a).total_cmp(&score(b)))?;
            Some((score(b), relevant(set, q, b.index)))
        })
        .collect()
}

/// `eval --tune-fusion`'s fit on the questions with a relevant candidate (their candidates in
/// the order given, the model's logits), nDCG@10.
fn tune_fusion(set: &RerankSet, scores: &[Vec<Ranked>]) -> Option<TunedFusion> {
    let (mut queries, mut logits) = (Vec::new(), Vec::new());
    for (q, s) in set.queries.iter().zip(scores) {
        if set
            .qrels
            .get(&q.qid)
            .is_some_and(|j| j.values().any(|&g| g > 0))
        {
            queries.push(q);
            logits.push(s.iter().map(|r| r.logit as f64).collect::<Vec<f64>>());
        }
    }
    let n = queries.iter().map(|q| q.candidates.len()).max()?;
    let spec = MetricSpec {
        ks: vec![10],
        level: 1,
    };
    tune(&queries, &logits, &set.qrels, &spec, "ndcg@10", n)
}

/// Writes `DIR/calibration.html`: the reliability diagrams of `raw` and `cal`.
fn write_report(dir: &Path, title: &str, raw: &[(f64, bool)], cal: &[(f64, bool)]) -> Result<()> {
    let points = |pairs: &[(f64, bool)]| -> (Vec<(f64, f64)>, f64) {
        let (bins, ece) = reliability(pairs, 10);
        let pts = bins
            .iter()
            .filter(|b| b.count > 0)
            .map(|b| (b.confidence, b.accuracy))
            .collect();
        (pts, ece)
    };
    let ((before, e0), (after, e1)) = (points(raw), points(cal));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("calibration.html");
    let html = crossrank_eval::report::reliability_html(title, &before, &after, (e0, e1));
    std::fs::write(&path, html).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Reliability of `(probability, relevant)` pairs as JSON: ECE and ten bins.
fn reliability_json(pairs: &[(f64, bool)]) -> serde_json::Value {
    let (bins, ece) = reliability(pairs, 10);
    serde_json::json!({"ece": ece, "bins": bins})
}

/// Answered questions needed for the Wilson lower bound of precision `p` at `z` to reach
/// `target` (None: `p` itself is below it).
fn answered_needed(p: f64, target: f64, z: f64) -> Option<usize> {
    if p <= target {
        return None;
    }
    (1..=10_000_000usize).find(|&n| wilson_lower(p, n, z) >= target)
}

/// Precision and coverage of answering at `threshold`.
fn at(questions: &[(f64, bool)], threshold: f64) -> CurvePoint {
    let answered: Vec<&(f64, bool)> = questions.iter().filter(|q| q.0 >= threshold).collect();
    let correct = answered.iter().filter(|q| q.1).count();
    CurvePoint {
        threshold,
        precision: if answered.is_empty() {
            1.0
        } else {
            correct as f64 / answered.len() as f64
        },
        coverage: answered.len() as f64 / questions.len().max(1) as f64,
    }
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    if !(0.0..=1.0).contains(&args.target_precision) {
        bail!("--target-precision must be within 0..1");
    }
    // Fitted and thresholded on the model's own scores, not an earlier calibration's.
    let reranker = args.model.raw_reranker()?;
    let load = |p: &PathBuf| -> Result<RerankSet> {
        Ok(match &args.wikiqa {
            Some(_) => datasets::wikiqa_with(p, args.include_unanswerable)?,
            None => datasets::labelled_jsonl(p)?,
        })
    };
    let input = args
        .wikiqa
        .as_ref()
        .or(args.labelled.as_ref())
        .ok_or_else(|| anyhow::anyhow!("give --wikiqa FILE or --labelled FILE"))?;
    let dev = load(input)?;
    if dev.queries.is_empty() {
        bail!("{}: no labelled questions", input.display());
    }
    let dev_scores = score_all(&dev, reranker.as_ref())?;
    let fitted = match args.fit {
        Some(m) => Some(fit(&args, m.into(), &dev, &dev_scores, input)?),
        None => None,
    };
    // Thresholds are on the scores the model will give: calibrated ones after --fit.
    let prob = |r: &Ranked| match &fitted {
        Some((c, _)) => c.apply(r.logit as f64),
        None => r.score as f64,
    };
    let questions = best(&dev, &dev_scores, &prob);
    let tuned = if args.tune_fusion {
        let t = tune_fusion(&dev, &dev_scores)
            .context("--tune-fusion needs at least two questions with a relevant candidate")?;
        if let Some(p) = &args.fusion_output {
            crate::commands::eval::write_fusion(
                p,
                &t,
                &format!("calibrate --tune-fusion on {}", input.display()),
            )?;
        }
        Some(t)
    } else {
        None
    };
    let curve = precision_coverage(&questions);
    let chosen = calibrate(&questions, args.target_precision, args.confidence_z);
    let (mut check, mut reliability_check, mut check_all) = (None, None, None);
    if let Some(p) = &args.check {
        let set = load(p)?;
        let scores = score_all(&set, reranker.as_ref())?;
        if let Some(c) = &chosen {
            check = Some(at(&best(&set, &scores, &prob), c.threshold));
            // WikiQA: the same threshold once the unanswerable questions count as well.
            if args.wikiqa.is_some() && !args.include_unanswerable {
                let all = datasets::wikiqa_with(p, true)?;
                let all_scores = score_all(&all, reranker.as_ref())?;
                check_all = Some(at(&best(&all, &all_scores, &prob), c.threshold));
            }
        }
        if let Some((c, _)) = &fitted {
            let held = pairs(&set, &scores);
            let raw: Vec<(f64, bool)> = held
                .iter()
                .map(|&(x, y)| (1.0 / (1.0 + (-x).exp()), y))
                .collect();
            let cal: Vec<(f64, bool)> = held.iter().map(|&(x, y)| (c.apply(x), y)).collect();
            reliability_check = Some(serde_json::json!({
                "pairs": held.len(),
                "uncalibrated": reliability_json(&raw),
                "calibrated": reliability_json(&cal),
            }));
            if let Some(dir) = &args.report {
                write_report(
                    dir,
                    &format!("{} on {}", reranker.name(), p.display()),
                    &raw,
                    &cal,
                )?;
            }
        }
    }
    let needed = chosen.as_ref().and_then(|c| {
        let n = answered_needed(c.precision, args.target_precision, args.confidence_z)?;
        Some(serde_json::json!({
            "answered": n,
            "questions": (n as f64 / c.coverage.max(1e-9)).ceil() as usize,
        }))
    });
    if args.json {
        println!(
            "{}",
            serde_json::json!({"questions": questions.len(), "target_precision": args.target_precision,
                "min_score": chosen.as_ref().map(|c| c.threshold), "calibration": chosen, "check": check,
                "check_with_unanswerable": check_all, "questions_needed": needed, "curve": curve,
                "fit": fitted.as_ref().map(|(c, path)| serde_json::json!({"calibration": c, "written": path})),
                "reliability_check": reliability_check, "tuned_fusion": tuned})
        );
        return Ok(());
    }
    println!(
        "{} questions; precision / coverage of answering when the best score >= threshold:",
        questions.len()
    );
    println!("{:>10} {:>10} {:>10}", "threshold", "precision", "coverage");
    let step = (curve.len() / 20).max(1);
    for p in curve.iter().step_by(step) {
        println!(
            "{:>10.4} {:>10.3} {:>10.3}",
            p.threshold, p.precision, p.coverage
        );
    }
    match chosen {
        Some(c) => {
            println!(
                "min_score = {:.4}: precision {:.3}, coverage {:.3} (target precision {}, Wilson lower bound at z = {})",
                c.threshold, c.precision, c.coverage, args.target_precision, args.confidence_z
            );
            if let Some(k) = check {
                println!(
                    "check set: precision {:.3}, coverage {:.3} at min_score {:.4}",
                    k.precision, k.coverage, k.threshold
                );
            }
            if let Some(k) = check_all {
                println!(
                    "check set with its unanswerable questions: precision {:.3}, coverage {:.3}",
                    k.precision, k.coverage
                );
            }
            if let Some(n) = needed {
                println!(
                    "for this precision to hold at z = {}: about {} answered questions, {} labelled",
                    args.confidence_z, n["answered"], n["questions"]
                );
            }
        }
        None => println!("no threshold reaches precision {}", args.target_precision),
    }
    if let Some((c, path)) = &fitted {
        println!("calibration {c:?} written to {}", path.display());
    }
    if let Some(t) = &tuned {
        println!(
            "fusion tuned on {} questions: rrf_k {}, reranker weight {:.2}; held-out {} first \
             stage {:.4}, reranked {:.4}, tuned {:.4}",
            t.tuned_on,
            t.setting.rrf_k,
            t.setting.reranker_weight,
            t.metric,
            t.held_out_metrics["first_stage"],
            t.held_out_metrics["reranked"],
            t.held_out_metrics["tuned_fusion"],
        );
    }
    if let Some(r) = &reliability_check {
        println!(
            "check set, {} pairs: expected calibration error {:.4} uncalibrated, {:.4} calibrated",
            r["pairs"], r["uncalibrated"]["ece"], r["calibrated"]["ece"]
        );
    }
    Ok(())
}

/// Fits the calibration on every pair of the dev set and writes it.
fn fit(
    args: &Args,
    method: Method,
    dev: &RerankSet,
    scores: &[Vec<Ranked>],
    input: &Path,
) -> Result<(Calibration, PathBuf)> {
    let train = pairs(dev, scores);
    let calibration = Calibration::fit(method, &train)?;
    let path = match &args.output {
        Some(p) => p.clone(),
        None => args.model.dir()?.join(FILE_NAME),
    };
    let file = CalibrationFile {
        calibration: calibration.clone(),
        model: args.model.reranker_name()?,
        pairs: train.len(),
        fitted_on: input.display().to_string(),
    };
    std::fs::write(&path, serde_json::to_string_pretty(&file)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok((calibration, path))
}

//! `crossrank calibrate`: pick the abstention threshold (`min_score`) for a target precision
//! from labelled data, and print the precision / coverage curve.

use crate::model_spec::ModelArgs;
use anyhow::{bail, Result};
use crossrank_eval::datasets::{self, RerankSet};
use crossrank_rank::fusion::{calibrate, precision_coverage, CurvePoint};
use crossrank_rank::Reranker;
use std::path::PathBuf;

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
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// (best candidate's score, whether it is relevant) per question.
fn best_per_question(set: &RerankSet, reranker: &dyn Reranker) -> Result<Vec<(f64, bool)>> {
    let mut out = Vec::with_capacity(set.queries.len());
    for q in &set.queries {
        let docs: Vec<&str> = q.candidates.iter().map(|c| c.text.as_str()).collect();
        let scores = reranker.score(&q.text, &docs)?;
        let Some(best) = scores.iter().max_by(|a, b| a.score.total_cmp(&b.score)) else {
            continue;
        };
        let docid = &q.candidates[best.index].docid;
        let relevant = set
            .qrels
            .get(&q.qid)
            .and_then(|j| j.get(docid))
            .is_some_and(|&g| g > 0);
        out.push((best.score as f64, relevant));
    }
    Ok(out)
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
    let reranker = args.model.reranker()?;
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
    let questions = best_per_question(&dev, reranker.as_ref())?;
    let curve = precision_coverage(&questions);
    let chosen = calibrate(&questions, args.target_precision, args.confidence_z);
    let check = match (&args.check, &chosen) {
        (Some(p), Some(c)) => Some(at(
            &best_per_question(&load(p)?, reranker.as_ref())?,
            c.threshold,
        )),
        _ => None,
    };
    if args.json {
        println!(
            "{}",
            serde_json::json!({"questions": questions.len(), "target_precision": args.target_precision,
                "min_score": chosen.as_ref().map(|c| c.threshold), "calibration": chosen, "check": check, "curve": curve})
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
        }
        None => println!("no threshold reaches precision {}", args.target_precision),
    }
    Ok(())
}

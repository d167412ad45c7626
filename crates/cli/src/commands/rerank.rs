//! `crossrank rerank`: rank documents against one query.

use crate::input::{jsonl_objects, read_source, string_field};
use crate::model_spec::ModelArgs;
use anyhow::{bail, Result};
use crossrank_rank::{sort_ranked, ScoreOptions};
use std::io::{BufWriter, Write};

/// Arguments of `rerank`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The query.
    #[arg(long, short)]
    pub query: String,
    /// Documents: one per line, or JSONL objects with a "text" field (default: stdin).
    #[arg(long, short)]
    pub input: Option<String>,
    /// Keep only the best N.
    #[arg(long)]
    pub top_n: Option<usize>,
    /// Print {"results": [{"index", "score", "text"}]}.
    #[arg(long)]
    pub json: bool,
    /// Abstain below this score: keep only results reaching it, and say `answerable: false`
    /// (with the best candidate) when none does. See `crossrank calibrate`.
    #[arg(long)]
    pub min_score: Option<f64>,
}

/// Documents from text: JSONL with "text" if the first non-blank line is a JSON object, else
/// one document per non-blank line.
fn documents(name: &str, text: &str) -> Result<Vec<String>> {
    let first = text.lines().find(|l| !l.trim().is_empty());
    let jsonl = first.is_some_and(|l| {
        l.trim_start().starts_with('{') && serde_json::from_str::<serde_json::Value>(l).is_ok()
    });
    if jsonl {
        jsonl_objects(name, text)?
            .iter()
            .map(|(line, obj)| string_field(name, *line, obj, "text").map(str::to_string))
            .collect()
    } else {
        Ok(text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect())
    }
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    let (name, text) = read_source(args.input.as_deref())?;
    let docs = documents(&name, &text)?;
    if docs.is_empty() {
        bail!("{name}: no documents to rank");
    }
    let reranker = args.model.reranker()?;
    let refs: Vec<&str> = docs.iter().map(String::as_str).collect();
    let scored = reranker.score_detailed(&args.query, &refs, &ScoreOptions::default())?;
    let mut ranked = scored.ranked;
    sort_ranked(&mut ranked);
    if let Some(n) = args.top_n {
        ranked.truncate(n);
    }
    // A cascade's results say which stage placed them and each stage's score.
    let stages = |i: usize| scored.cascade.as_ref().and_then(|c| c.scores.get(i));
    let abstention = args.min_score.map(|m| {
        let best = ranked.first().map(|r| (r.index, r.score as f64));
        let answerable = best.is_some_and(|(_, s)| s >= m);
        ranked.retain(|r| r.score as f64 >= m);
        (answerable, best)
    });
    let mut out = BufWriter::new(std::io::stdout().lock());
    if args.json {
        let results: Vec<_> = ranked
            .iter()
            .map(|r| {
                let mut v =
                    serde_json::json!({"index": r.index, "score": r.score, "text": docs[r.index]});
                if let Some(s) = stages(r.index) {
                    v["stage"] = serde_json::json!(s.len());
                    v["stage_scores"] = serde_json::json!(s);
                }
                v
            })
            .collect();
        let mut body = serde_json::json!({ "results": results });
        if let Some((answerable, best)) = abstention {
            body["answerable"] = serde_json::json!(answerable);
            body["best"] = match best {
                Some((i, s)) => serde_json::json!({"index": i, "score": s, "text": docs[i]}),
                None => serde_json::Value::Null,
            };
        }
        writeln!(out, "{body}")?;
    } else {
        if let Some((false, best)) = abstention {
            let (i, s) = best.unwrap_or((0, 0.0));
            writeln!(out, "no confident answer: the best candidate (index {i}) scores {s:.4}, below --min-score")?;
        }
        writeln!(out, "rank\tscore\tindex\ttext")?;
        for (rank, r) in ranked.iter().enumerate() {
            let mut t: String = docs[r.index].chars().take(100).collect();
            if t.len() < docs[r.index].len() {
                t.push('…');
            }
            writeln!(out, "{}\t{:.4}\t{}\t{}", rank + 1, r.score, r.index, t)?;
        }
    }
    out.flush()?;
    Ok(())
}

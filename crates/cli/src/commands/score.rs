//! `crossrank score`: CrossEncoder.predict over a JSONL file of pairs.

use crate::input::read_instructed_pairs;
use crate::model_spec::ModelArgs;
use anyhow::Result;
use std::io::{BufWriter, Write};

/// Arguments of `score`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// JSONL file of {"query", "passage"} objects ("-" for stdin).
    #[arg(long)]
    pub pairs: String,
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    args.model.truncation_only("score")?;
    let (_, rows) = read_instructed_pairs(&args.pairs)?;
    let model = args.model.load()?;
    // Pairs are scored in groups of one instruction (a line's own, else --instruction),
    // then written back in input order.
    let mut preds: Vec<Option<crossrank_engine::Prediction>> = vec![None; rows.len()];
    let mut groups: Vec<(Option<&str>, Vec<usize>)> = Vec::new();
    for (i, (_, _, inst)) in rows.iter().enumerate() {
        let inst = inst.as_deref().or(args.model.instruction.as_deref());
        match groups.iter_mut().find(|(g, _)| *g == inst) {
            Some((_, v)) => v.push(i),
            None => groups.push((inst, vec![i])),
        }
    }
    for (inst, idx) in groups {
        let pairs: Vec<(&str, &str)> = idx
            .iter()
            .map(|&i| (rows[i].0.as_str(), rows[i].1.as_str()))
            .collect();
        for (&i, p) in idx.iter().zip(model.predict_with(&pairs, inst)?) {
            preds[i] = Some(p);
        }
    }
    let preds = preds.into_iter().flatten();
    let mut out = BufWriter::new(std::io::stdout().lock());
    for p in preds {
        let line = if p.logits.len() == 1 {
            serde_json::json!({"logit": p.logits[0], "score": p.score})
        } else {
            serde_json::json!({"logits": p.logits, "score": p.score})
        };
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}

//! `crossrank score`: CrossEncoder.predict over a JSONL file of pairs.

use crate::input::read_pairs;
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
    let (_, pairs) = read_pairs(&args.pairs)?;
    let model = args.model.load()?;
    let preds = model.predict(&pairs)?;
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

//! Rankings as TREC runs: qid -> (docid, score), ordered the way trec_eval orders them.

use crate::{EvalError, Result};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// qid -> documents with scores (any order).
pub type Run = BTreeMap<String, Vec<(String, f64)>>;

/// Sorts like trec_eval: score descending, ties by docid descending (byte order).
pub fn trec_order(docs: &mut [(String, f64)]) {
    docs.sort_by(|a, b| {
        b.1.total_cmp(&a.1)
            .then_with(|| b.0.as_bytes().cmp(a.0.as_bytes()))
    });
}

/// Writes a run file: `qid Q0 docid rank score tag`.
pub fn write_trec(run: &Run, tag: &str, path: &Path) -> Result<()> {
    let mut out = String::new();
    for (qid, docs) in run {
        let mut d = docs.clone();
        trec_order(&mut d);
        for (rank, (doc, score)) in d.iter().enumerate() {
            let _ = writeln!(out, "{qid} Q0 {doc} {} {score:.9} {tag}", rank + 1);
        }
    }
    std::fs::write(path, out).map_err(|source| EvalError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Reads a run file.
pub fn parse_trec(path: &Path) -> Result<Run> {
    let text = crate::read_text(path)?;
    let mut run = Run::new();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        let err = |message: String| EvalError::Parse {
            path: path.display().to_string(),
            line: i + 1,
            message,
        };
        if f.len() < 5 {
            return Err(err("expected `qid Q0 docid rank score [tag]`".into()));
        }
        let score: f64 = f[4]
            .parse()
            .map_err(|_| err(format!("score {:?} is not a number", f[4])))?;
        run.entry(f[0].to_string())
            .or_default()
            .push((f[2].to_string(), score));
    }
    Ok(run)
}

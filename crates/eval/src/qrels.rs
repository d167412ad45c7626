//! Relevance judgments: TREC qrels (`qid 0 docid grade`) and BEIR TSV (`query-id corpus-id score`).

use crate::{read_text, EvalError, Result};
use std::collections::HashMap;
use std::path::Path;

/// qid -> docid -> grade.
pub type Qrels = HashMap<String, HashMap<String, i32>>;

/// Parses TREC qrels: `qid iteration docid grade` separated by whitespace.
pub fn parse_trec(path: &Path) -> Result<Qrels> {
    let text = read_text(path)?;
    let mut q = Qrels::new();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        if f.len() != 4 {
            return Err(EvalError::Parse {
                path: path.display().to_string(),
                line: i + 1,
                message: format!("expected `qid 0 docid grade`, found {} fields", f.len()),
            });
        }
        let grade: i32 = f[3].parse().map_err(|_| EvalError::Parse {
            path: path.display().to_string(),
            line: i + 1,
            message: format!("grade {:?} is not an integer", f[3]),
        })?;
        q.entry(f[0].to_string())
            .or_default()
            .insert(f[2].to_string(), grade);
    }
    Ok(q)
}

/// Parses BEIR qrels: a header line, then `query-id<TAB>corpus-id<TAB>score`.
pub fn parse_beir(path: &Path) -> Result<Qrels> {
    let text = read_text(path)?;
    let mut q = Qrels::new();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split('\t').collect();
        if i == 0 && f.first().is_some_and(|h| h.starts_with("query")) || line.trim().is_empty() {
            continue;
        }
        let parse_err = |message: String| EvalError::Parse {
            path: path.display().to_string(),
            line: i + 1,
            message,
        };
        if f.len() < 3 {
            return Err(parse_err(format!(
                "expected 3 tab-separated fields, found {}",
                f.len()
            )));
        }
        let grade: i32 = f[2]
            .trim()
            .parse()
            .map_err(|_| parse_err(format!("score {:?} is not an integer", f[2])))?;
        q.entry(f[0].to_string())
            .or_default()
            .insert(f[1].to_string(), grade);
    }
    Ok(q)
}

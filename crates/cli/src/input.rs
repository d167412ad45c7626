//! Reading JSONL and text inputs with errors that name the file and line.

use anyhow::{bail, Context, Result};
use std::io::Read;

/// Reads a whole file, or stdin for `-` / no path.
pub fn read_source(path: Option<&str>) -> Result<(String, String)> {
    match path {
        None | Some("-") => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading standard input")?;
            Ok(("<stdin>".into(), s))
        }
        Some(p) => {
            let bytes = std::fs::read(p).with_context(|| format!("cannot read {p}"))?;
            let s = String::from_utf8(bytes)
                .map_err(|e| anyhow::anyhow!("{p}: not UTF-8 text ({e})"))?;
            Ok((p.to_string(), s))
        }
    }
}

/// Parses one JSON object per non-blank line; `(line number, object)`.
pub fn jsonl_objects(
    name: &str,
    text: &str,
) -> Result<Vec<(usize, serde_json::Map<String, serde_json::Value>)>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| anyhow::anyhow!("{name}:{n}: invalid JSON: {e}"))?;
        match v {
            serde_json::Value::Object(m) => out.push((n, m)),
            _ => bail!("{name}:{n}: expected a JSON object"),
        }
    }
    Ok(out)
}

/// A required string field of a JSONL object.
pub fn string_field<'a>(
    name: &str,
    line: usize,
    obj: &'a serde_json::Map<String, serde_json::Value>,
    field: &str,
) -> Result<&'a str> {
    match obj.get(field) {
        Some(serde_json::Value::String(s)) => Ok(s),
        Some(other) => bail!(
            "{name}:{line}: field \"{field}\" must be a string, found {}",
            kind(other)
        ),
        None => bail!("{name}:{line}: missing field \"{field}\""),
    }
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Reads `{"query", "passage"}` objects, one per line, from a file (or stdin for `-`).
pub fn read_pairs(path: &str) -> Result<(String, Vec<(String, String)>)> {
    let (name, rows) = read_instructed_pairs(path)?;
    Ok((name, rows.into_iter().map(|(q, p, _)| (q, p)).collect()))
}

/// (query, passage, instruction) of one input line.
pub type InstructedPair = (String, String, Option<String>);

/// Like [`read_pairs`], with each line's optional `"instruction"` string.
pub fn read_instructed_pairs(path: &str) -> Result<(String, Vec<InstructedPair>)> {
    let (name, text) = read_source(Some(path))?;
    let mut pairs = Vec::new();
    for (line, obj) in jsonl_objects(&name, &text)? {
        let instruction = match obj.get("instruction") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(_) => anyhow::bail!("{name}:{line}: \"instruction\" must be a string"),
        };
        pairs.push((
            string_field(&name, line, &obj, "query")?.to_string(),
            string_field(&name, line, &obj, "passage")?.to_string(),
            instruction,
        ));
    }
    Ok((name, pairs))
}

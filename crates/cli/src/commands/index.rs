//! `crossrank index`: add, replace or delete documents of an on-disk collection.

use crate::input::{jsonl_objects, read_source};
use anyhow::{bail, Context, Result};
use crossrank_retrieve::collection::{Collection, DocInput};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;

/// Arguments of `index`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Collection directory (created if missing).
    #[arg(long)]
    pub collection: PathBuf,
    /// JSONL of {id, text, title?, source?, updated_at? (RFC 3339), doc_id?, metadata?}.
    #[arg(long)]
    pub input: Option<String>,
    /// Bi-encoder (sentence-transformers layout: directory or hub id) for dense retrieval;
    /// fixed at the collection's first use.
    #[arg(long)]
    pub embedder: Option<String>,
    /// Split texts longer than this many tokens of the collection's bi-encoder (words for a
    /// BM25-only collection) into chunks at word boundaries, keeping doc_id.
    #[arg(long)]
    pub chunk_tokens: Option<usize>,
    /// Tokens (or words) shared by consecutive chunks.
    #[arg(long, default_value_t = 0)]
    pub overlap: usize,
    /// Delete these ids.
    #[arg(long)]
    pub delete: Vec<String>,
    /// Documents per commit.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    if args.input.is_none() && args.delete.is_empty() {
        bail!("nothing to do: give --input FILE and/or --delete ID");
    }
    let mut parsed = Vec::new();
    if let Some(input) = &args.input {
        let (name, text) = read_source(Some(input))?;
        for (line, obj) in jsonl_objects(&name, &text)? {
            let d: DocInput = serde_json::from_value(serde_json::Value::Object(obj))
                .map_err(|e| anyhow::anyhow!("{name}:{line}: {e}"))?;
            parsed.push(d);
        }
    }
    let embedder = args
        .embedder
        .as_deref()
        .map(crate::model_spec::resolve_embedder)
        .transpose()?;
    let mut c = Collection::open(&args.collection, embedder.as_deref(), !parsed.is_empty())
        .with_context(|| format!("opening collection {}", args.collection.display()))?;
    let docs = match args.chunk_tokens {
        Some(n) => c.chunk_all(&parsed, n, args.overlap)?,
        None => parsed,
    };
    if !args.delete.is_empty() {
        let n = c.delete(&args.delete)?;
        println!("deleted {n} of {} ids (committed)", args.delete.len());
    }
    if !docs.is_empty() {
        let bar = ProgressBar::new(docs.len() as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "indexing {bar:40} {pos}/{len} [{elapsed_precise} < {eta_precise}]",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let mut done = 0;
        for part in docs.chunks(args.batch.max(1)) {
            c.upsert(part)?;
            done += part.len();
            bar.suspend(|| {
                use std::io::Write;
                println!(
                    "committed {done} documents (last id {})",
                    part[part.len() - 1].id
                );
                let _ = std::io::stdout().flush();
            });
            bar.inc(part.len() as u64);
        }
        bar.finish_and_clear();
        c.flush()?;
        println!(
            "indexed {} documents (committed); the collection holds {}",
            docs.len(),
            c.len()
        );
    }
    Ok(())
}

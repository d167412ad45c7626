//! `crossrank index`: add, replace or delete documents of a collection (a directory, or a
//! collection in PostgreSQL with `--store`).

use crate::input::{jsonl_objects, read_source};
use anyhow::{bail, Context, Result};
use crossrank_retrieve::collection::DocInput;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;

/// Arguments of `index`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Collection directory (created if missing); with --store, the collection's name.
    #[arg(long)]
    pub collection: PathBuf,
    #[command(flatten)]
    pub store: crate::store::StoreArgs,
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
    let (store, name) =
        args.store
            .open(&args.collection, embedder.as_deref(), !parsed.is_empty())?;
    let context = || format!("collection {}", args.collection.display());
    if !args.delete.is_empty() {
        let mut n = 0;
        for id in &args.delete {
            n += store.delete(&name, id).with_context(context)?.is_some() as usize;
        }
        println!("deleted {n} of {} ids (committed)", args.delete.len());
    }
    if !parsed.is_empty() {
        let bar = ProgressBar::new(parsed.len() as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "indexing {bar:40} {pos}/{len} [{elapsed_precise} < {eta_precise}]",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let chunk = args.chunk_tokens.map(|n| (n, args.overlap));
        let (mut done, mut count) = (0, 0);
        for part in parsed.chunks(args.batch.max(1)) {
            let up = store
                .upsert(&name, part, chunk, usize::MAX)
                .with_context(context)?;
            done += up.indexed;
            count = up.count;
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
        store.flush(true);
        println!("indexed {done} documents (committed); the collection holds {count}");
    }
    Ok(())
}

//! `crossrank search`: first stage, rerank, fusion, abstention over a collection.

use crate::model_spec::ModelArgs;
use anyhow::{bail, Context, Result};
use crossrank_rank::fusion::FusionConfig;
use crossrank_retrieve::collection::{Collection, Retriever};
use crossrank_retrieve::pipeline::{now_unix, search, RetrieverKind, SearchRequest};
use std::path::PathBuf;

/// Arguments of `search`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Collection directory.
    #[arg(long)]
    pub collection: PathBuf,
    /// The query.
    #[arg(long, short)]
    pub query: String,
    /// Results returned.
    #[arg(long, default_value_t = 10)]
    pub top_k: usize,
    /// First-stage candidates reranked.
    #[arg(long, default_value_t = 50)]
    pub candidates: usize,
    /// The first stage: bm25, dense or hybrid (RRF, k = 60).
    #[arg(long, value_enum, default_value_t = RetrieverKind::Hybrid)]
    pub retriever: RetrieverKind,
    /// Abstain when no candidate's relevance reaches this.
    #[arg(long)]
    pub min_score: Option<f64>,
    /// Fusion settings (TOML: weights, half_life_days, authority, default_authority, mmr_lambda).
    #[arg(long)]
    pub fusion: Option<PathBuf>,
    /// Only documents of this source.
    #[arg(long)]
    pub source: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    let r = Retriever::from(args.retriever);
    let fusion: FusionConfig = match &args.fusion {
        Some(p) => {
            let t = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            toml::from_str(&t).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
        }
        None => FusionConfig::default(),
    };
    if !Collection::exists(&args.collection) {
        bail!(
            "{} is not a collection (run crossrank index first)",
            args.collection.display()
        );
    }
    let mut c = Collection::open(&args.collection, None, r != Retriever::Bm25)?;
    let reranker = args.model.reranker()?;
    let mut req = SearchRequest {
        query: args.query.clone(),
        top_k: args.top_k,
        candidates: args.candidates,
        retriever: args.retriever,
        fusion,
        min_score: args.min_score,
        ..Default::default()
    };
    req.filters.source = args.source.clone();
    let resp = search(&mut c, &req, now_unix(), |q, texts| {
        Ok(reranker
            .score(q, texts)?
            .iter()
            .map(|s| s.score as f64)
            .collect())
    })?;
    if args.json {
        println!("{}", serde_json::to_string(&resp)?);
        return Ok(());
    }
    if !resp.answerable {
        let s = resp.best.as_ref().map(|b| b.score).unwrap_or(0.0);
        println!("no confident answer: the best candidate scores {s:.4} (below --min-score)");
    }
    println!("rank\tscore\trelevance\tid\ttext");
    for (i, h) in resp.results.iter().enumerate() {
        let t: String = h.text.chars().take(90).collect();
        println!(
            "{}\t{:.4}\t{:.4}\t{}\t{}",
            i + 1,
            h.score,
            h.breakdown.relevance,
            h.id,
            t
        );
    }
    let t = &resp.timings_ms;
    println!(
        "retrieve {:.1} ms, rerank {:.1} ms, fuse {:.1} ms",
        t.retrieve, t.rerank, t.fuse
    );
    Ok(())
}

//! `crossrank search`: first stage, rerank, fusion, abstention over a collection.

use crate::model_spec::ModelArgs;
use anyhow::{Context, Result};
use crossrank_rank::fusion::FusionConfig;
use crossrank_rank::ScoreOptions;
use crossrank_retrieve::hybrid::HybridMode;
use crossrank_retrieve::pipeline::{now_unix, search, RetrieverKind, SearchRequest};
use std::path::PathBuf;

/// Arguments of `search`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Collection directory; with --store, the collection's name.
    #[arg(long)]
    pub collection: PathBuf,
    #[command(flatten)]
    pub store: crate::store::StoreArgs,
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
    /// Hybrid fusion: the reciprocal-rank constant k (default fusion: RRF, k = 60).
    #[arg(long, conflicts_with = "bm25_weight")]
    pub rrf_k: Option<f64>,
    /// Hybrid fusion: a weighted sum of min-max normalised scores with this weight on BM25
    /// (0-1) instead of RRF.
    #[arg(long)]
    pub bm25_weight: Option<f64>,
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
    let fusion: FusionConfig = match &args.fusion {
        Some(p) => {
            let t = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            toml::from_str(&t).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
        }
        None => FusionConfig::default(),
    };
    let (store, name) = args.store.open(
        &args.collection,
        None,
        args.retriever != RetrieverKind::Bm25,
    )?;
    let reranker = args.model.reranker()?;
    let mut req = SearchRequest {
        query: args.query.clone(),
        top_k: args.top_k,
        candidates: args.candidates,
        retriever: args.retriever,
        hybrid: match (args.rrf_k, args.bm25_weight) {
            (_, Some(bm25_weight)) => HybridMode::Weighted { bm25_weight },
            (Some(k), None) => HybridMode::Rrf { k },
            (None, None) => HybridMode::default(),
        },
        fusion,
        min_score: args.min_score,
        ..Default::default()
    };
    req.filters.source = args.source.clone();
    let opts = ScoreOptions::default();
    let resp = search(
        store.as_ref(),
        &name,
        &req,
        now_unix(),
        reranker.as_ref(),
        &opts,
    )?;
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

//! `crossrank search`: first stage, rerank, fusion, abstention over a collection.

use crate::model_spec::ModelArgs;
use anyhow::{bail, Context, Result};
use crossrank_rank::fusion::{abstain, FusionConfig, FusionInput};
use crossrank_retrieve::collection::{Collection, Retriever};
use crossrank_retrieve::hybrid::HybridMode;
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

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
    /// bm25, dense or hybrid (RRF, k = 60).
    #[arg(long, default_value = "hybrid")]
    pub retriever: String,
    /// Abstain when no candidate's relevance reaches this.
    #[arg(long)]
    pub min_score: Option<f64>,
    /// Fusion settings (TOML: weights, half_life_days, authority, default_authority, mmr_lambda).
    #[arg(long)]
    pub fusion: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Parses a retriever name.
pub fn retriever(name: &str) -> Result<Retriever> {
    Ok(match name {
        "bm25" => Retriever::Bm25,
        "dense" => Retriever::Dense,
        "hybrid" => Retriever::Hybrid(HybridMode::default()),
        other => bail!("--retriever must be bm25, dense or hybrid, not {other:?}"),
    })
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    let r = retriever(&args.retriever)?;
    let fusion: FusionConfig = match &args.fusion {
        Some(p) => {
            let t = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            toml::from_str(&t).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
        }
        None => FusionConfig::default(),
    };
    if !args.collection.join("collection.json").is_file() {
        bail!(
            "{} is not a collection (run crossrank index first)",
            args.collection.display()
        );
    }
    let mut c = Collection::open(&args.collection, None, r != Retriever::Bm25)?;
    let reranker = args.model.reranker()?;
    let t0 = Instant::now();
    let hits = c.retrieve(&args.query, r, args.candidates)?;
    let mut docs = Vec::with_capacity(hits.len());
    for (id, _) in &hits {
        if let Some(d) = c.get(id)? {
            docs.push(d);
        }
    }
    let t1 = Instant::now();
    let texts: Vec<String> = docs
        .iter()
        .map(|d| match &d.title {
            Some(t) if !t.is_empty() => format!("{t} {}", d.text),
            _ => d.text.clone(),
        })
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let scores = reranker.score(&args.query, &refs)?;
    let t2 = Instant::now();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let inputs: Vec<FusionInput> = docs
        .iter()
        .zip(&scores)
        .map(|(d, s)| FusionInput {
            id: d.id.clone(),
            doc_id: d.doc_id.clone(),
            relevance: s.score as f64,
            age_days: d.age_days(now),
            source: d.source.clone(),
        })
        .collect();
    let mut fused = fusion.fuse(&inputs);
    let rel: Vec<f64> = inputs.iter().map(|i| i.relevance).collect();
    let decision = abstain(&rel, args.min_score.unwrap_or(f64::NEG_INFINITY));
    if let Some(m) = args.min_score {
        fused.retain(|f| f.breakdown.relevance >= m);
    }
    fused.truncate(args.top_k);
    let t3 = Instant::now();
    let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
    let results: Vec<_> = fused
        .iter()
        .map(|f| {
            let d = &docs[f.index];
            json!({"id": d.id, "doc_id": d.doc_id, "score": f.breakdown.score, "breakdown": f.breakdown,
                   "text": d.text, "title": d.title, "source": d.source, "updated_at": d.updated_at, "metadata": d.metadata})
        })
        .collect();
    let best = decision
        .best_index
        .map(|i| json!({"id": docs[i].id, "score": decision.best_score, "text": docs[i].text}));
    let body = json!({
        "answerable": decision.answerable, "best": best, "results": results,
        "timings_ms": {"retrieve": ms(t0, t1), "rerank": ms(t1, t2), "fuse": ms(t2, t3)},
    });
    if args.json {
        println!("{body}");
        return Ok(());
    }
    if !decision.answerable {
        println!(
            "no confident answer: the best candidate scores {:.4} (below --min-score)",
            decision.best_score
        );
    }
    println!("rank\tscore\trelevance\tid\ttext");
    for (i, f) in fused.iter().enumerate() {
        let d = &docs[f.index];
        let t: String = d.text.chars().take(90).collect();
        println!(
            "{}\t{:.4}\t{:.4}\t{}\t{}",
            i + 1,
            f.breakdown.score,
            f.breakdown.relevance,
            d.id,
            t
        );
    }
    println!(
        "retrieve {:.1} ms, rerank {:.1} ms, fuse {:.1} ms",
        ms(t0, t1),
        ms(t1, t2),
        ms(t2, t3)
    );
    Ok(())
}

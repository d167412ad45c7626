//! `crossrank eval`: quality before and after reranking, candidate sweeps, reports.

use crate::model_spec::ModelArgs;
use anyhow::{bail, Context, Result};
use crossrank_eval::datasets::{self, RerankSet};
use crossrank_eval::harness::{comparison_metric, run_eval, EvalOptions};
use crossrank_eval::metrics::MetricSpec;
use crossrank_eval::tune::TunedFusion;
use crossrank_eval::{report, run};
use crossrank_rank::cascade::is_cascade_spec;
use crossrank_rank::Reranker;
use crossrank_retrieve::pipeline::RetrieverKind;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};

/// Arguments of `eval`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Candidates to rerank: a TREC DL JSON (`[{query, hits: [{content, qid, docid, score}]}]`)
    /// or a TREC run file (then --docs and --topics give the texts).
    #[arg(long, conflicts_with = "wikiqa")]
    pub rerank_file: Option<PathBuf>,
    /// TREC qrels for --rerank-file.
    #[arg(long)]
    pub qrels: Option<PathBuf>,
    /// Document texts for a TREC run: JSONL (id, text[, title]) or TSV (id<TAB>text).
    #[arg(long)]
    pub docs: Option<PathBuf>,
    /// Query texts for a TREC run: TSV (qid<TAB>query).
    #[arg(long)]
    pub topics: Option<PathBuf>,
    /// A WikiQA tsv(.gz): candidates as given, Label 1 relevant.
    #[arg(long)]
    pub wikiqa: Option<PathBuf>,
    /// A BEIR folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv): BM25 first stage over the
    /// corpus, then the reranker.
    #[arg(long, conflicts_with_all = ["rerank_file", "wikiqa"])]
    pub beir: Option<PathBuf>,
    /// BEIR split.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// BEIR first stage: bm25 (in memory), or dense / hybrid over a collection built with
    /// --embedder in a temporary directory; with --store, the store's retrieval.
    #[arg(long, value_enum, default_value_t = RetrieverKind::Bm25)]
    pub retriever: RetrieverKind,
    /// Bi-encoder for --retriever dense / hybrid (directory or hub id).
    #[arg(long)]
    pub embedder: Option<String>,
    #[command(flatten)]
    pub store: crate::store::StoreArgs,
    /// With --store: the collection holding the BEIR corpus (indexed into it first when it does
    /// not exist; default beir_NAME).
    #[arg(long, requires = "store")]
    pub collection: Option<String>,
    /// First-stage depth (default: the largest --candidates).
    #[arg(long)]
    pub depth: Option<usize>,
    /// Candidate counts to rerank (sweep); the largest is used for the stage comparison.
    #[arg(long, value_delimiter = ',', default_value = "10,20,30,50,100")]
    pub candidates: Vec<usize>,
    /// Metric cut-offs.
    #[arg(long, value_delimiter = ',', default_value = "1,3,5,10")]
    pub k: Vec<usize>,
    /// Lowest grade counted relevant by binary metrics (default: 2 for TREC inputs, 1 otherwise).
    #[arg(long)]
    pub relevance_level: Option<i32>,
    /// Evaluate only the first N queries.
    #[arg(long)]
    pub max_queries: Option<usize>,
    /// Queries timed per candidate count.
    #[arg(long, default_value_t = 10)]
    pub latency_queries: usize,
    /// With a cascade --model: the last stage's K values to sweep, each cascade reported
    /// beside each stage's model alone (default: the spec's K).
    #[arg(long, value_delimiter = ',')]
    pub cascade_k: Vec<usize>,
    /// Fit how much of the first stage to keep (a weighted RRF of the first stage's and the
    /// reranker's ranks: rrf_k and the reranker's weight) on every other query and report the
    /// rest: first stage, reranked, default and tuned fusion.
    #[arg(long)]
    pub tune_fusion: bool,
    /// With --tune-fusion: write the fitted setting as a fusion TOML here (for `search
    /// --fusion FILE` and `serve --fusion FILE`).
    #[arg(long, requires = "tune_fusion")]
    pub fusion_output: Option<PathBuf>,
    /// Write report.md and report.html here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write each stage's ranking as a TREC run file here.
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn load(args: &Args) -> Result<(RerankSet, i32)> {
    if let Some(f) = &args.rerank_file {
        let qrels = args
            .qrels
            .as_deref()
            .context("--rerank-file needs --qrels")?;
        let set = if f.extension().is_some_and(|e| e == "json") {
            datasets::trec_dl_json(f, qrels)?
        } else {
            let docs = args
                .docs
                .as_deref()
                .context("a TREC run needs --docs with the document texts")?;
            let topics = args
                .topics
                .as_deref()
                .context("a TREC run needs --topics with the query texts")?;
            datasets::trec_run_with_docs(f, docs, topics, qrels)?
        };
        return Ok((set, 2));
    }
    if let Some(f) = &args.wikiqa {
        return Ok((datasets::wikiqa(f)?, 1));
    }
    if let Some(dir) = &args.beir {
        return Ok((beir_first_stage(args, dir)?, 1));
    }
    bail!("give --rerank-file FILE --qrels QRELS, --wikiqa FILE or --beir DIR")
}

/// A first stage: query -> (doc id, score), best first.
type FirstStage = Box<dyn FnMut(&str) -> Result<Vec<(String, f32)>>>;

/// BM25 over the corpus gives each query its candidates.
fn beir_first_stage(args: &Args, dir: &Path) -> Result<RerankSet> {
    let mut b = datasets::beir(dir, &args.split)?;
    if let Some(n) = args.max_queries {
        b.queries.truncate(n);
    }
    let texts: std::collections::HashMap<&str, &str> = b
        .corpus
        .iter()
        .map(|(i, t)| (i.as_str(), t.as_str()))
        .collect();
    let depth = args
        .depth
        .unwrap_or_else(|| args.candidates.iter().copied().max().unwrap_or(100));
    let tmp = std::env::temp_dir().join(format!("crossrank-beir-{}", std::process::id()));
    let mut first: FirstStage = if let Some(url) = &args.store.store {
        store_first_stage(args, url, &b, depth)?
    } else if args.retriever == RetrieverKind::Bm25 {
        eprintln!(
            "indexing {} documents of {} with BM25",
            b.corpus.len(),
            b.name
        );
        let index = crossrank_retrieve::bm25::Bm25Index::build_in_ram(
            b.corpus.iter().map(|(i, t)| (i, t)),
        )?;
        Box::new(move |q| Ok(index.search(q, depth)?))
    } else {
        let r = crossrank_retrieve::collection::Retriever::from(args.retriever);
        let emb = crate::model_spec::resolve_embedder(
            args.embedder
                .as_deref()
                .context("--retriever dense / hybrid needs --embedder DIR")?,
        )?;
        let _ = std::fs::remove_dir_all(&tmp);
        eprintln!(
            "embedding {} documents of {} into {}",
            b.corpus.len(),
            b.name,
            tmp.display()
        );
        let mut c = crossrank_retrieve::collection::Collection::open(&tmp, Some(&emb), true)?;
        let docs: Vec<crossrank_retrieve::collection::DocInput> = b
            .corpus
            .iter()
            .map(|(id, text)| crossrank_retrieve::collection::DocInput::new(id, text))
            .collect();
        for part in docs.chunks(512) {
            c.upsert(part)?;
        }
        Box::new(move |q| Ok(c.retrieve(q, r, depth)?))
    };
    let mut queries = Vec::with_capacity(b.queries.len());
    for (qid, text) in &b.queries {
        let candidates = first(text)?
            .into_iter()
            .map(|(docid, score)| datasets::Candidate {
                text: texts
                    .get(docid.as_str())
                    .copied()
                    .unwrap_or_default()
                    .to_string(),
                docid,
                score: score as f64,
            })
            .collect();
        queries.push(datasets::Query {
            qid: qid.clone(),
            text: text.clone(),
            candidates,
        });
    }
    Ok(RerankSet {
        name: format!(
            "{} ({}, {} top {depth})",
            b.name,
            args.split,
            args.retriever.name().to_uppercase()
        ),
        queries,
        qrels: b.qrels,
    })
}

/// The first stage of `--store`: the store's own retrieval over collection `--collection`,
/// which is made from the BEIR corpus if it does not exist.
fn store_first_stage(
    args: &Args,
    url: &str,
    b: &datasets::Beir,
    depth: usize,
) -> Result<FirstStage> {
    use crossrank_retrieve::collection::DocInput;
    use crossrank_retrieve::pipeline::SearchRequest;
    use crossrank_retrieve::store::{CollectionStore, PgConfig, PgStore};
    use crossrank_retrieve::RetrieveError;
    let emb = args
        .embedder
        .as_deref()
        .map(crate::model_spec::resolve_embedder)
        .transpose()?;
    let store = PgStore::new(url, emb.as_deref(), usize::MAX, PgConfig::default())?;
    let name = args.collection.clone().unwrap_or_else(|| {
        let n: String = b
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        format!("beir_{n}")
    });
    let retriever = args.retriever;
    let request = move |query: &str| SearchRequest {
        query: query.to_string(),
        candidates: depth,
        retriever,
        ..Default::default()
    };
    match store.first_stage(&name, &request("probe")) {
        Err(RetrieveError::NotFound(_)) => {
            eprintln!(
                "indexing {} documents of {} into collection {name} of {}",
                b.corpus.len(),
                b.name,
                store.location()
            );
            let docs: Vec<DocInput> = b
                .corpus
                .iter()
                .map(|(id, text)| DocInput::new(id, text))
                .collect();
            for part in docs.chunks(256) {
                store.upsert(&name, part, None, usize::MAX)?;
            }
        }
        other => {
            other?;
            eprintln!(
                "collection {name} of {} is already indexed",
                store.location()
            );
        }
    }
    Ok(Box::new(move |q| {
        let got = store.first_stage(&name, &request(q))?;
        let n = got.docs().len();
        // The store returns candidates in order; their rank stands for the score.
        Ok(got
            .docs()
            .iter()
            .enumerate()
            .map(|(r, d)| (d.id.clone(), (n - r) as f32))
            .collect())
    }))
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    let (mut set, default_level) = load(&args)?;
    if let Some(n) = args.max_queries {
        set.queries.truncate(n);
    }
    let reranker = args.model.reranker()?;
    let opts = EvalOptions {
        spec: MetricSpec {
            ks: args.k.clone(),
            level: args.relevance_level.unwrap_or(default_level),
        },
        candidates: args.candidates.clone(),
        latency_queries: args.latency_queries,
        tune_fusion: args.tune_fusion,
        ..Default::default()
    };
    let bar = ProgressBar::new(set.queries.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "reranking {bar:40} {pos}/{len} queries [{elapsed_precise} < {eta_precise}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let result = run_eval(&set, reranker.as_ref(), &opts, &|done, _| {
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();
    if let (Some(path), Some(t)) = (&args.fusion_output, &result.tuned_fusion) {
        write_fusion(
            path,
            t,
            &format!("eval --tune-fusion on {}", result.dataset),
        )?;
    }
    if let Some(dir) = &args.run_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for (stage, r) in &result.runs {
            run::write_trec(r, stage, &dir.join(format!("{stage}.trec")))?;
        }
    }
    if let Some(dir) = &args.report {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        write(&dir.join("report.md"), &report::markdown(&result))?;
        write(&dir.join("report.html"), &report::html(&result))?;
    }
    let sweep = match args.model.model.as_deref().filter(|m| is_cascade_spec(m)) {
        Some(spec) => cascade_sweep(&args, spec, &set, &opts, result.candidates)?,
        None => Vec::new(),
    };
    if args.json {
        let mut v = serde_json::to_value(&result)?;
        if !sweep.is_empty() {
            v["cascade_sweep"] = serde_json::to_value(&sweep)?;
        }
        println!("{v}");
    } else {
        print!("{}", report::markdown(&result));
        if !sweep.is_empty() {
            print!("{}", cascade_table(&sweep, &comparison_metric(&opts.spec)));
        }
        if let Some(dir) = &args.report {
            println!("\nreport: {}", dir.join("report.html").display());
        }
    }
    Ok(())
}

/// Writes a tuned fusion as a fusion TOML (`[first_stage]`) for `search --fusion` and
/// `serve --fusion`, with a comment saying where it came from and how it did.
pub(crate) fn write_fusion(path: &Path, t: &TunedFusion, what: &str) -> Result<()> {
    let fusion = crossrank_rank::fusion::FusionConfig {
        first_stage: Some(t.setting),
        ..Default::default()
    };
    let held = |k: &str| t.held_out_metrics.get(k).copied().unwrap_or(f64::NAN);
    let text = format!(
        "# crossrank {what} ({} queries fitted, {} held out: {} {:.4} tuned vs {:.4} reranked)\n{}",
        t.tuned_on,
        t.held_out,
        t.metric,
        held("tuned_fusion"),
        held("reranked"),
        toml::to_string(&fusion)?
    );
    write(path, &text)?;
    eprintln!("fusion written to {}", path.display());
    Ok(())
}

/// One row of a cascade sweep: a stage's model alone or the cascade at one K.
#[derive(serde::Serialize)]
struct CascadeRow {
    reranker: String,
    /// The last stage's K (None: a model alone).
    k: Option<usize>,
    metrics: std::collections::BTreeMap<String, f64>,
    rerank_ms_per_query: f64,
}

/// Each stage's model alone, then the cascade with its last K at each `--cascade-k`, all on
/// the top `candidates` of every query: quality and median milliseconds per query.
fn cascade_sweep(
    args: &Args,
    spec: &str,
    set: &RerankSet,
    opts: &EvalOptions,
    candidates: usize,
) -> Result<Vec<CascadeRow>> {
    let cascade = args.model.cascade(spec)?;
    let opts = EvalOptions {
        candidates: vec![candidates],
        ..opts.clone()
    };
    let parsed = crossrank_rank::cascade::CascadeSpec::parse(spec)?;
    let names: Vec<&str> = parsed.models().collect();
    let mut ks = args.cascade_k.clone();
    if ks.is_empty() {
        ks.extend(parsed.then.last().map(|t| t.1));
    }
    let mut rows = Vec::new();
    let mut row = |name: String, k: Option<usize>, r: &dyn Reranker| -> Result<()> {
        eprintln!("cascade sweep: {name}");
        let e = run_eval(set, r, &opts, &|_, _| {})?;
        let point = e.sweep.last().context("the evaluation swept nothing")?;
        rows.push(CascadeRow {
            reranker: name,
            k,
            metrics: point.metrics.clone(),
            rerank_ms_per_query: point.rerank_ms_per_query,
        });
        Ok(())
    };
    for (name, stage) in names.iter().zip(cascade.stages()) {
        row(format!("{name} alone"), None, stage.as_ref())?;
    }
    for k in ks.into_iter().filter(|&k| k >= 1) {
        let c = cascade.with_last_k(k)?;
        row(format!("cascade, last stage on the best {k}"), Some(k), &c)?;
    }
    Ok(rows)
}

fn cascade_table(rows: &[CascadeRow], metric: &str) -> String {
    let mut s =
        format!("\n## Cascade sweep\n\n| reranker | {metric} | ms / query |\n|---|---:|---:|\n");
    for r in rows {
        s.push_str(&format!(
            "| {} | {:.4} | {:.1} |\n",
            r.reranker,
            r.metrics.get(metric).copied().unwrap_or(f64::NAN),
            r.rerank_ms_per_query
        ));
    }
    s
}

//! `crossrank bench-retrieval`: first-stage latency on a generated on-disk collection (random
//! unit vectors and generated text, written through the same `Collection` code as `index`):
//! p50 / p95 of dense top-k (HNSW above the collection's threshold) and BM25 top-k, and the
//! graph's recall@k against exact search.

use anyhow::{Context, Result};
use crossrank_eval::stats::{percentile, XorShift64};
use crossrank_retrieve::collection::{Collection, DocInput, Manifest, Retriever};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::time::Instant;

/// How the vectors are drawn.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum Distribution {
    /// Around one centre per 500 vectors (noise ~0.9 of the centre's norm), like real
    /// embeddings, whose neighbours share topics.
    Clustered,
    /// Uniform on the sphere: no structure, the worst case for any ANN index.
    Uniform,
}

/// Arguments of `bench-retrieval`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Chunks generated.
    #[arg(long, default_value_t = 500_000)]
    pub docs: usize,
    /// Embedding width.
    #[arg(long, default_value_t = 384)]
    pub dim: usize,
    /// How vectors are drawn.
    #[arg(long, value_enum, default_value_t = Distribution::Clustered)]
    pub distribution: Distribution,
    /// Queries timed.
    #[arg(long, default_value_t = 200)]
    pub queries: usize,
    /// Results per query.
    #[arg(long, default_value_t = 50)]
    pub k: usize,
    /// Dense index above the threshold (the collection's `ann.kind`).
    #[arg(long, default_value = "hnsw", value_parser = ["hnsw", "int8-scan"])]
    pub index: String,
    /// HNSW ef at search time (the collection's `ann.expansion_search`).
    #[arg(long, default_value_t = 128)]
    pub ef_search: usize,
    /// Collection directory (default: a temporary one, removed afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Measure a PostgreSQL + pgvector store instead (postgres://USER@HOST:PORT/DB): the
    /// collection is made in it (and dropped afterwards), and filtered searches are timed too.
    #[arg(long)]
    pub store: Option<String>,
    /// With --store: keep the HNSW index while writing (as a live collection does) instead
    /// of building it once after the load.
    #[arg(long, requires = "store")]
    pub pg_incremental: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub(crate) struct Rng(pub(crate) XorShift64);
impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0.next_u64()
    }
    /// Roughly normal (sum of uniforms).
    fn normal(&mut self) -> f32 {
        (0..4)
            .map(|_| (self.next() % 1_000_000) as f32 / 1_000_000.0)
            .sum::<f32>()
            - 2.0
    }
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// (p50, p95) of millisecond samples.
pub(crate) fn percentiles(v: Vec<f64>) -> (f64, f64) {
    (percentile(&v, 0.5), percentile(&v, 0.95))
}

pub(crate) struct Generator {
    pub(crate) rng: Rng,
    dim: usize,
    centers: Vec<Vec<f32>>,
    vocab: Vec<String>,
}

impl Generator {
    /// The generator of `args` (the same seed for every store).
    pub(crate) fn new(args: &Args) -> Generator {
        let mut rng = Rng(XorShift64::new(0x9E37_79B9_7F4A_7C15));
        let centers = match args.distribution {
            Distribution::Clustered => (0..(args.docs / 500).max(1))
                .map(|_| unit((0..args.dim).map(|_| rng.normal()).collect()))
                .collect(),
            Distribution::Uniform => Vec::new(),
        };
        Generator {
            rng,
            dim: args.dim,
            centers,
            vocab: (0..50_000).map(|i| format!("w{i:x}")).collect(),
        }
    }

    pub(crate) fn vector(&mut self) -> Vec<f32> {
        if self.centers.is_empty() {
            return unit((0..self.dim).map(|_| self.rng.normal()).collect());
        }
        let c = (self.rng.next() as usize) % self.centers.len();
        let noise: Vec<f32> = (0..self.dim).map(|_| 0.08 * self.rng.normal()).collect();
        unit(
            self.centers[c]
                .iter()
                .zip(noise)
                .map(|(x, n)| x + n)
                .collect(),
        )
    }
    /// `n` words, Zipf-like (squaring a uniform favours small ranks).
    pub(crate) fn words(&mut self, n: usize) -> String {
        let words: Vec<&str> = (0..n)
            .map(|_| {
                let u = (self.rng.next() % 1_000_000) as f64 / 1_000_000.0;
                self.vocab[((u * u) * self.vocab.len() as f64) as usize].as_str()
            })
            .collect();
        words.join(" ")
    }
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    anyhow::ensure!(
        args.docs > 0 && args.queries > 0 && args.k > 0,
        "--docs, --queries and --k must be positive"
    );
    if let Some(url) = &args.store {
        return super::bench_postgres::run(&args, url);
    }
    let (dir, temporary) = match &args.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("crossrank-bench-retrieval-{}", std::process::id())),
            true,
        ),
    };
    anyhow::ensure!(
        !Collection::exists(&dir),
        "{} already holds a collection; give an empty --dir",
        dir.display()
    );
    let manifest: Manifest = serde_json::from_value(
        serde_json::json!({"ann": {"expansion_search": args.ef_search, "kind": args.index}}),
    )
    .with_context(|| format!("--index {}", args.index))?;
    Collection::init(&dir, &manifest)?;
    let result = bench(&args, &dir);
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn bench(args: &Args, dir: &std::path::Path) -> Result<()> {
    let mut g = Generator::new(args);
    let mut c = Collection::open(dir, None, false)?;
    let bar = ProgressBar::new(args.docs as u64).with_style(
        ProgressStyle::with_template("indexing {bar:40} {pos}/{len} chunks ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let t = Instant::now();
    let batch = 10_000;
    let mut sample_texts = Vec::new();
    for start in (0..args.docs).step_by(batch) {
        let n = batch.min(args.docs - start);
        let docs: Vec<DocInput> = (start..start + n)
            .map(|i| DocInput::new(format!("c{i}"), g.words(40)))
            .collect();
        let vectors: Vec<Vec<f32>> = (0..n).map(|_| g.vector()).collect();
        if sample_texts.len() < args.queries {
            sample_texts.push(docs[0].text.clone());
        }
        c.upsert_embedded(&docs, vectors)?;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    let index_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    c.flush()?;
    let save_s = t.elapsed().as_secs_f64();
    drop(c);
    let t = Instant::now();
    let mut c = Collection::open(dir, None, false)?;
    let info = c.dense_info()?;
    let open_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        info.saved,
        "the reopened collection rebuilt its dense index"
    );

    let queries: Vec<(Vec<f32>, String)> = (0..args.queries)
        .map(|i| {
            let text = &sample_texts[i % sample_texts.len()];
            let words: Vec<&str> = text
                .split(' ')
                .skip(g.rng.next() as usize % 30)
                .take(5)
                .collect();
            (g.vector(), words.join(" "))
        })
        .collect();
    let mut found = 0usize;
    let mut dense_ms = Vec::new();
    let mut exact_ms = Vec::new();
    for (v, _) in &queries {
        let t = Instant::now();
        let got = c.search_vector(v, args.k)?;
        dense_ms.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let want = c.search_vector_exact(v, args.k)?;
        exact_ms.push(t.elapsed().as_secs_f64() * 1e3);
        found += want
            .iter()
            .filter(|w| got.iter().any(|g| g.0 == w.0))
            .count();
    }
    let recall = found as f64 / (args.k * queries.len()) as f64;
    let mut bm25_ms = Vec::new();
    let mut bm25_hits = 0usize;
    for (_, q) in &queries {
        let t = Instant::now();
        bm25_hits += c.retrieve(q, Retriever::Bm25, args.k)?.len();
        bm25_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (dense_p50, dense_p95) = percentiles(dense_ms);
    let (exact_p50, _) = percentiles(exact_ms);
    let (bm25_p50, bm25_p95) = percentiles(bm25_ms);
    let distribution = format!("{:?}", args.distribution).to_lowercase();
    let report = serde_json::json!({
        "docs": args.docs, "dim": args.dim, "distribution": distribution, "queries": args.queries,
        "k": args.k, "ef_search": args.ef_search, "index": info.index,
        "index_s": index_s, "save_s": save_s, "reopen_s": open_s,
        "dense_p50_ms": dense_p50, "dense_p95_ms": dense_p95, "dense_exact_p50_ms": exact_p50,
        "recall_at_k": recall, "bm25_p50_ms": bm25_p50, "bm25_p95_ms": bm25_p95,
        "bm25_mean_hits": bm25_hits as f64 / queries.len() as f64,
        "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "{} chunks, {}-d {distribution} unit vectors, 40-word generated texts, {} queries",
            args.docs, args.dim, args.queries
        );
        println!(
            "build: index (tantivy + {}) {index_s:.1} s, save {save_s:.1} s, reopen {open_s:.2} s",
            info.index.name()
        );
        println!(
            "dense top-{k}: p50 {dense_p50:.2} ms, p95 {dense_p95:.2} ms, recall@{k} vs exact {recall:.4} (exact scan p50 {exact_p50:.1} ms)",
            k = args.k
        );
        println!(
            "BM25 top-{}: p50 {bm25_p50:.2} ms, p95 {bm25_p95:.2} ms",
            args.k
        );
    }
    Ok(())
}

//! `crossrank bench-retrieval`: first-stage latency on a generated collection (clustered
//! random unit vectors and generated text): p50 of dense (HNSW) top-k and BM25 top-k, and the
//! HNSW's recall@k against exact search.

use anyhow::Result;
use crossrank_retrieve::bm25::Bm25Index;
use crossrank_retrieve::dense::DenseIndex;
use std::time::Instant;

/// Arguments of `bench-retrieval`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Chunks generated.
    #[arg(long, default_value_t = 500_000)]
    pub docs: usize,
    /// Embedding width.
    #[arg(long, default_value_t = 384)]
    pub dim: usize,
    /// Queries timed.
    #[arg(long, default_value_t = 200)]
    pub queries: usize,
    /// Results per query.
    #[arg(long, default_value_t = 50)]
    pub k: usize,
    /// HNSW ef at search time.
    #[arg(long, default_value_t = 256)]
    pub ef_search: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
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

fn p50(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let clusters = (args.docs / 500).max(1);
    let centers: Vec<Vec<f32>> = (0..clusters)
        .map(|_| unit((0..args.dim).map(|_| rng.normal()).collect()))
        .collect();
    let mut dense = DenseIndex::new(args.dim);
    let vocab: Vec<String> = (0..50_000).map(|i| format!("w{i:x}")).collect();
    let mut texts = Vec::with_capacity(args.docs);
    let t = Instant::now();
    for i in 0..args.docs {
        let c = &centers[(rng.next() as usize) % clusters];
        let v = unit(c.iter().map(|x| x + 0.08 * rng.normal()).collect());
        dense.push(i.to_string(), &v);
        // Zipf-like word choice: squaring a uniform favours small ranks.
        let words: Vec<&str> = (0..40)
            .map(|_| {
                let u = (rng.next() % 1_000_000) as f64 / 1_000_000.0;
                vocab[((u * u) * vocab.len() as f64) as usize].as_str()
            })
            .collect();
        texts.push((i.to_string(), words.join(" ")));
    }
    let gen_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let bm25 = Bm25Index::build_in_ram(texts.iter().map(|(i, s)| (i.as_str(), s.as_str())))?;
    let bm25_s = t.elapsed().as_secs_f64();
    let queries: Vec<(Vec<f32>, String)> = (0..args.queries)
        .map(|_| {
            let c = &centers[(rng.next() as usize) % clusters];
            let v = unit(c.iter().map(|x| x + 0.08 * rng.normal()).collect());
            let q = &texts[(rng.next() as usize) % texts.len()].1;
            (v, q.split(' ').take(5).collect::<Vec<_>>().join(" "))
        })
        .collect();
    let exact: Vec<Vec<String>> = queries
        .iter()
        .map(|(v, _)| dense.exact(v, args.k).into_iter().map(|h| h.0).collect())
        .collect();
    let exact_ms = p50(queries
        .iter()
        .map(|(v, _)| {
            let t = Instant::now();
            std::hint::black_box(dense.exact(v, args.k));
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect());
    let t = Instant::now();
    dense.build_ann(args.ef_search);
    let ann_s = t.elapsed().as_secs_f64();
    let mut found = 0usize;
    let ann_ms = p50(queries
        .iter()
        .zip(&exact)
        .map(|((v, _), want)| {
            let t = Instant::now();
            let got = dense.search(v, args.k);
            let ms = t.elapsed().as_secs_f64() * 1e3;
            found += want
                .iter()
                .filter(|w| got.iter().any(|g| &g.0 == *w))
                .count();
            ms
        })
        .collect());
    let recall = found as f64 / (args.k * queries.len()) as f64;
    let bm25_ms = p50(queries
        .iter()
        .map(|(_, q)| {
            let t = Instant::now();
            std::hint::black_box(bm25.search(q, args.k).unwrap_or_default());
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect());
    let report = serde_json::json!({
        "docs": args.docs, "dim": args.dim, "queries": args.queries, "k": args.k, "ef_search": args.ef_search,
        "generate_s": gen_s, "bm25_index_s": bm25_s, "hnsw_build_s": ann_s,
        "dense_hnsw_p50_ms": ann_ms, "dense_exact_p50_ms": exact_ms, "bm25_p50_ms": bm25_ms,
        "hnsw_recall_at_k": recall,
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "{} chunks, {}-d clustered unit vectors, 40-word generated texts",
            args.docs, args.dim
        );
        println!("build: generate {gen_s:.1} s, BM25 index {bm25_s:.1} s, HNSW {ann_s:.1} s");
        println!("dense top-{}: HNSW p50 {ann_ms:.2} ms (recall@{} vs exact {recall:.3}), exact p50 {exact_ms:.1} ms", args.k, args.k);
        println!("BM25 top-{}: p50 {bm25_ms:.2} ms", args.k);
    }
    Ok(())
}

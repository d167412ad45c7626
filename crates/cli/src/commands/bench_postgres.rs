//! `crossrank bench-retrieval --store postgres://...`: the same generated collection written
//! into PostgreSQL + pgvector through the store (one transaction per 5,000 chunks, the HNSW
//! index maintained as rows arrive), then dense top-k p50 / p95 and recall@k against an exact
//! scan in the database, the same with a filter matching 10% of the rows, and full-text top-k.
//! The collection is deleted afterwards.

use super::bench_retrieval::{percentiles, Args, Generator};
use anyhow::{Context, Result};
use crossrank_retrieve::collection::DocInput;
use crossrank_retrieve::pipeline::{Filters, RetrieverKind, SearchRequest};
use crossrank_retrieve::store::{CollectionStore, PgConfig, PgStore};
use indicatif::{ProgressBar, ProgressStyle};
use std::time::Instant;

/// Dense timings and recall for one filter.
struct Dense {
    p50: f64,
    p95: f64,
    exact_p50: f64,
    recall: f64,
    mean_rows: f64,
}

fn dense(
    store: &PgStore,
    name: &str,
    queries: &[Vec<f32>],
    k: usize,
    f: &Filters,
) -> Result<Dense> {
    let (mut ms, mut exact_ms, mut found, mut rows) = (Vec::new(), Vec::new(), 0, 0);
    for q in queries {
        let t = Instant::now();
        let got = store.search_vector(name, q, k, f, false)?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let want = store.search_vector(name, q, k, f, true)?;
        exact_ms.push(t.elapsed().as_secs_f64() * 1e3);
        rows += got.len();
        found += want
            .iter()
            .filter(|w| got.iter().any(|g| g.0 == w.0))
            .count();
    }
    let (p50, p95) = percentiles(ms);
    Ok(Dense {
        p50,
        p95,
        exact_p50: percentiles(exact_ms).0,
        recall: found as f64 / (k * queries.len()) as f64,
        mean_rows: rows as f64 / queries.len() as f64,
    })
}

/// Runs the benchmark against the database `url`.
pub fn run(args: &Args, url: &str) -> Result<()> {
    let config = PgConfig {
        timeout_ms: 600_000,
        ..PgConfig::default()
    };
    let store = PgStore::new(url, None, usize::MAX, config)?;
    let name = format!("bench_{}", std::process::id());
    let mut g = Generator::new(args);
    let bar = ProgressBar::new(args.docs as u64).with_style(
        ProgressStyle::with_template("writing {bar:40} {pos}/{len} chunks ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let t = Instant::now();
    let batch = 5_000;
    let mut sample_texts = Vec::new();
    for start in (0..args.docs).step_by(batch) {
        let n = batch.min(args.docs - start);
        let docs: Vec<DocInput> = (start..start + n)
            .map(|i| DocInput {
                metadata: Some(serde_json::json!({"bucket": i % 10})),
                ..DocInput::new(format!("c{i}"), g.words(40))
            })
            .collect();
        let vectors: Vec<Vec<f32>> = (0..n).map(|_| g.vector()).collect();
        if sample_texts.len() < args.queries {
            sample_texts.push(docs[0].text.clone());
        }
        store
            .upsert_vectors(&name, &docs, vectors)
            .with_context(|| format!("writing chunks {start}.."))?;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    let build_s = t.elapsed().as_secs_f64();
    let queries: Vec<Vec<f32>> = (0..args.queries).map(|_| g.vector()).collect();
    let all = dense(&store, &name, &queries, args.k, &Filters::default())?;
    let mut tenth = Filters::default();
    tenth.metadata.insert("bucket".into(), serde_json::json!(3));
    let filtered = dense(&store, &name, &queries, args.k, &tenth)?;
    let mut lexical_ms = Vec::new();
    let mut lexical_rows = 0;
    for i in 0..args.queries {
        let text = &sample_texts[i % sample_texts.len()];
        let words: Vec<&str> = text
            .split(' ')
            .skip(g.rng.next() as usize % 30)
            .take(5)
            .collect();
        let req = SearchRequest {
            query: words.join(" "),
            candidates: args.k,
            retriever: RetrieverKind::Bm25,
            ..Default::default()
        };
        let t = Instant::now();
        lexical_rows += store.first_stage(&name, &req)?.docs().len();
        lexical_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (lex_p50, lex_p95) = percentiles(lexical_ms);
    store.drop_collection(&name)?;
    let distribution = format!("{:?}", args.distribution).to_lowercase();
    let report = serde_json::json!({
        "store": store.location(), "docs": args.docs, "dim": args.dim,
        "distribution": distribution, "queries": args.queries, "k": args.k,
        "build_s": build_s,
        "dense_p50_ms": all.p50, "dense_p95_ms": all.p95, "dense_exact_p50_ms": all.exact_p50,
        "recall_at_k": all.recall, "dense_mean_rows": all.mean_rows,
        "filtered_p50_ms": filtered.p50, "filtered_p95_ms": filtered.p95,
        "filtered_exact_p50_ms": filtered.exact_p50, "filtered_recall_at_k": filtered.recall,
        "filtered_mean_rows": filtered.mean_rows,
        "lexical_p50_ms": lex_p50, "lexical_p95_ms": lex_p95,
        "lexical_mean_rows": lexical_rows as f64 / args.queries as f64,
    });
    if args.json {
        println!("{report}");
        return Ok(());
    }
    println!(
        "{} chunks, {}-d {distribution} unit vectors, 40-word generated texts, {} queries, in {}",
        args.docs,
        args.dim,
        args.queries,
        store.location()
    );
    println!("build: written with the HNSW index maintained, {build_s:.1} s");
    for (what, d) in [("dense", &all), ("dense, filter on 10% of rows", &filtered)] {
        println!(
            "{what} top-{k}: p50 {:.2} ms, p95 {:.2} ms, recall@{k} vs exact {:.4}, {:.1} rows \
             (exact scan p50 {:.1} ms)",
            d.p50,
            d.p95,
            d.recall,
            d.mean_rows,
            d.exact_p50,
            k = args.k
        );
    }
    println!(
        "full-text top-{}: p50 {lex_p50:.2} ms, p95 {lex_p95:.2} ms",
        args.k
    );
    Ok(())
}

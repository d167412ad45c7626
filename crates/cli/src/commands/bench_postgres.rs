//! `crossrank bench-retrieval --store postgres://...`: the same generated collection written
//! into PostgreSQL + pgvector through the store (one transaction per 5,000 chunks; the HNSW
//! index built once after the load, or with `--pg-incremental` maintained as rows arrive),
//! then dense top-k p50 / p95 and recall@k against an exact scan in the database (at the
//! store's `ef_search` floor and a sweep of others), the same with a filter matching 10% of
//! the rows, and full-text top-k.
//! The collection is deleted afterwards.

use super::bench_retrieval::{percentiles, Args, Generator};
use anyhow::{Context, Result};
use crossrank_retrieve::collection::DocInput;
use crossrank_retrieve::pipeline::{Filters, RetrieverKind, SearchRequest};
use crossrank_retrieve::store::{CollectionStore, PgConfig, PgStore, Scan};
use indicatif::{ProgressBar, ProgressStyle};
use std::time::Instant;

/// Dense timings and recall for one filter and scan.
struct Dense {
    p50: f64,
    p95: f64,
    recall: f64,
    mean_rows: f64,
}

/// Ids and cosine similarities, best first.
type Hits = Vec<(String, f32)>;

/// The exact top-k of every query (a full scan each) and its p50 milliseconds.
fn exact(
    store: &PgStore,
    name: &str,
    queries: &[Vec<f32>],
    k: usize,
    f: &Filters,
) -> Result<(Vec<Hits>, f64)> {
    let (mut want, mut ms) = (Vec::new(), Vec::new());
    for q in queries {
        let t = Instant::now();
        want.push(store.search_vector(name, q, k, f, Scan::Exact)?);
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok((want, percentiles(ms).0))
}

fn dense(
    store: &PgStore,
    name: &str,
    queries: &[Vec<f32>],
    want: &[Hits],
    k: usize,
    f: &Filters,
    scan: Scan,
) -> Result<Dense> {
    let (mut ms, mut found, mut rows) = (Vec::new(), 0, 0);
    for (q, want) in queries.iter().zip(want) {
        let t = Instant::now();
        let got = store.search_vector(name, q, k, f, scan)?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
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
        recall: found as f64 / (k * queries.len()) as f64,
        mean_rows: rows as f64 / queries.len() as f64,
    })
}

/// `hnsw.ef_search` floors measured besides the store's default.
const EF_SWEEP: [usize; 4] = [40, 100, 200, 400];

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
    let mut index_s = 0.0;
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
        if start == 0 && !args.pg_incremental {
            // Bulk load: the first upload made the collection; write the rest without the
            // graph and build it once at the end.
            store.set_hnsw(&name, false)?;
        }
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    let load_s = t.elapsed().as_secs_f64();
    if !args.pg_incremental {
        let t = Instant::now();
        store.set_hnsw(&name, true)?;
        index_s = t.elapsed().as_secs_f64();
    }
    let build_s = load_s + index_s;
    let queries: Vec<Vec<f32>> = (0..args.queries).map(|_| g.vector()).collect();
    let scan = store.scan();
    let (want, exact_p50) = exact(&store, &name, &queries, args.k, &Filters::default())?;
    let all = dense(
        &store,
        &name,
        &queries,
        &want,
        args.k,
        &Filters::default(),
        scan,
    )?;
    let mut sweep = Vec::new();
    for ef_search in EF_SWEEP {
        let d = dense(
            &store,
            &name,
            &queries,
            &want,
            args.k,
            &Filters::default(),
            Scan::Hnsw { ef_search },
        )?;
        sweep.push((ef_search, d));
    }
    let mut tenth = Filters::default();
    tenth.metadata.insert("bucket".into(), serde_json::json!(3));
    let (want_tenth, filtered_exact_p50) = exact(&store, &name, &queries, args.k, &tenth)?;
    let filtered = dense(&store, &name, &queries, &want_tenth, args.k, &tenth, scan)?;
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
        "build_s": build_s, "load_s": load_s, "index_s": index_s,
        "bulk_load": !args.pg_incremental, "ef_search_floor": PgConfig::default().ef_search,
        "dense_p50_ms": all.p50, "dense_p95_ms": all.p95, "dense_exact_p50_ms": exact_p50,
        "recall_at_k": all.recall, "dense_mean_rows": all.mean_rows,
        "filtered_p50_ms": filtered.p50, "filtered_p95_ms": filtered.p95,
        "filtered_exact_p50_ms": filtered_exact_p50, "filtered_recall_at_k": filtered.recall,
        "filtered_mean_rows": filtered.mean_rows,
        "ef_search_sweep": sweep.iter().map(|(ef, d)| serde_json::json!({
            "ef_search": ef, "p50_ms": d.p50, "p95_ms": d.p95, "recall_at_k": d.recall,
        })).collect::<Vec<_>>(),
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
    if args.pg_incremental {
        println!("build: written with the HNSW index maintained, {build_s:.1} s");
    } else {
        println!(
            "build: {build_s:.1} s ({load_s:.1} s writing without the graph, {index_s:.1} s \
             CREATE INDEX hnsw)"
        );
    }
    let floor = PgConfig::default().ef_search;
    for (what, d, exact_ms) in [
        ("dense", &all, exact_p50),
        (
            "dense, filter on 10% of rows",
            &filtered,
            filtered_exact_p50,
        ),
    ] {
        println!(
            "{what} top-{k} (ef_search floor {floor}): p50 {:.2} ms, p95 {:.2} ms, recall@{k} vs \
             exact {:.4}, {:.1} rows (exact scan p50 {exact_ms:.1} ms)",
            d.p50,
            d.p95,
            d.recall,
            d.mean_rows,
            k = args.k
        );
    }
    for (ef, d) in &sweep {
        println!(
            "  ef_search floor {ef:>4}: p50 {:.2} ms, p95 {:.2} ms, recall@{} {:.4}",
            d.p50, d.p95, args.k, d.recall
        );
    }
    println!(
        "full-text top-{}: p50 {lex_p50:.2} ms, p95 {lex_p95:.2} ms",
        args.k
    );
    Ok(())
}

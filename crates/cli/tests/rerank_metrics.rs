//! Observability of reranking itself: TEI-style timing headers on every rerank route, and the
//! per-model series of `/metrics` after a scripted sequence of requests (candidates per
//! request, pairs and chunks, pairs filling the window, tokens per pair, scores, searches and
//! abstentions).

mod common;

use common::*;
use serde_json::json;

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} missing:\n{text}"))
}

const M: &str = "{model=\"minilm-l6-rerank\"}";

#[test]
fn timing_headers_and_rerank_series_count_a_scripted_sequence() {
    let dir = temp_dir("rerank-metrics");
    let srv = serve(&["--cache-mb", "0", "--collections", dir.to_str().unwrap()]);
    let long = "the river delta floods every spring and the farmers move uphill ".repeat(300);
    let q = "why do farmers move uphill in spring";

    // 1. Three short documents (TEI). 2. One long document, truncated (TEI): one pair that
    // fills the window.
    let (st, _, h) = srv.post(
        "/rerank",
        &json!({"query": q, "texts": ["spring floods", "farmers", "uphill"]}),
    );
    assert_eq!(st, 200);
    for name in [
        "x-compute-time",
        "x-total-time",
        "x-tokenization-time",
        "x-queue-time",
        "x-inference-time",
        "x-compute-tokens",
    ] {
        let v = h
            .get(name)
            .unwrap_or_else(|| panic!("no {name}: {h:?}"))
            .to_str()
            .unwrap();
        assert!(v.parse::<u64>().is_ok(), "{name}: {v}");
    }
    let (st, _, _) = srv.post("/rerank", &json!({"query": q, "texts": [long]}));
    assert_eq!(st, 200);
    let (_, m) = srv.get("/metrics");
    assert_eq!(metric(&m, &format!("crossrank_documents_total{M}")), 4.0);
    assert_eq!(metric(&m, &format!("crossrank_pairs_total{M}")), 4.0);
    assert_eq!(
        metric(&m, &format!("crossrank_full_window_pairs_total{M}")),
        1.0
    );

    // 3. Cohere v1: a short document and the long one cut into 4 chunks; the header counts
    // the tokens the body reports.
    let (st, v, h) = srv.post(
        "/v1/rerank",
        &json!({"query": q, "documents": ["spring", long], "max_chunks_per_doc": 4}),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        h["x-compute-tokens"].to_str().unwrap(),
        v["usage"]["total_tokens"].to_string()
    );
    let (_, m) = srv.get("/metrics");
    assert_eq!(metric(&m, &format!("crossrank_documents_total{M}")), 6.0);
    assert_eq!(metric(&m, &format!("crossrank_pairs_total{M}")), 4.0 + 5.0);
    let count = |name: &str| metric(&m, &format!("{name}_count{M}"));
    assert_eq!(count("crossrank_rerank_documents"), 3.0);
    assert_eq!(
        metric(&m, &format!("crossrank_rerank_documents_sum{M}")),
        6.0
    );
    assert_eq!(count("crossrank_rerank_scores"), 6.0);
    assert_eq!(count("crossrank_pair_tokens"), 9.0);
    // Every score is a probability: all in the le="1" bucket.
    assert_eq!(
        metric(
            &m,
            "crossrank_rerank_scores_bucket{model=\"minilm-l6-rerank\",le=\"1\"}"
        ),
        6.0
    );

    // 4. Two searches, one of which abstains.
    let (st, v, _) = srv.post(
        "/v1/collections/c/documents",
        &json!({"documents": [{"id": "a", "text": "farmers move uphill when the delta floods"},
                              {"id": "b", "text": "the stock market closed higher"}]}),
    );
    assert_eq!(st, 200, "{v}");
    let (st, v, _) = srv.post(
        "/v1/collections/c/search",
        &json!({"query": q, "retriever": "bm25", "min_score": 0.0}),
    );
    assert_eq!((st, v["answerable"].as_bool()), (200, Some(true)), "{v}");
    let (st, v, _) = srv.post(
        "/v1/collections/c/search",
        &json!({"query": "stock market", "retriever": "bm25", "min_score": 0.9999}),
    );
    assert_eq!((st, v["answerable"].as_bool()), (200, Some(false)), "{v}");
    let (_, m) = srv.get("/metrics");
    assert_eq!(metric(&m, &format!("crossrank_searches_total{M}")), 2.0);
    assert_eq!(metric(&m, &format!("crossrank_abstentions_total{M}")), 1.0);
}

#[test]
fn concurrent_identical_requests_reach_the_engine_once() {
    let srv = serve(&[]);
    let (q, docs) = w50();
    let body = json!({"query": q, "texts": docs, "raw_scores": true});
    // Four clients at once (each W50 request takes ~100 ms or more here): without in-flight
    // deduplication, overlapping misses would each be scored.
    let answers: Vec<serde_json::Value> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let (st, v, _) = srv.post("/rerank", &body);
                    assert_eq!(st, 200, "{v}");
                    v
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(answers.iter().all(|a| a == &answers[0]));
    let (_, m) = srv.get("/metrics");
    let n = docs.len() as f64;
    assert_eq!(metric(&m, &format!("crossrank_cache_misses_total{M}")), n);
    assert_eq!(
        metric(&m, &format!("crossrank_cache_hits_total{M}")),
        3.0 * n
    );
    assert_eq!(metric(&m, &format!("crossrank_batch_pairs_sum{M}")), n);
}

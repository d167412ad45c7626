//! The HTTP server end to end: a real `crossrank serve` on loopback with the real model.

mod common;

use common::*;
use serde_json::{json, Value};
use std::process::Command;

/// Passages of the first fixture query with their reference scores (PyTorch), fixture order.
fn reference_group() -> (String, Vec<String>, Vec<f64>, Vec<f64>) {
    let rows = jsonl(&shared().join("fixtures/minilm-l6-rerank.pairs.jsonl"));
    let q = rows[0]["query"].clone();
    let group: Vec<&Value> = rows.iter().filter(|r| r["query"] == q).collect();
    (
        q.as_str().unwrap().to_string(),
        group
            .iter()
            .map(|r| r["passage"].as_str().unwrap().to_string())
            .collect(),
        group.iter().map(|r| r["score"].as_f64().unwrap()).collect(),
        group.iter().map(|r| r["logit"].as_f64().unwrap()).collect(),
    )
}

fn assert_ranked(items: &[Value], score_key: &str, want: &[f64]) {
    assert_eq!(items.len(), want.len());
    let mut prev = f64::INFINITY;
    for it in items {
        let i = it["index"].as_u64().unwrap() as usize;
        let s = it[score_key].as_f64().unwrap();
        assert!(
            (s - want[i]).abs() <= 1e-5,
            "index {i}: {s} vs reference {}",
            want[i]
        );
        assert!(s <= prev, "not sorted best first");
        prev = s;
    }
}

#[test]
fn tei_rerank_matches_reference_and_options() {
    let srv = serve(&[]);
    let (q, docs, scores, logits) = reference_group();
    let (st, v, _) = srv.post("/rerank", &json!({"query": q, "texts": docs}));
    assert_eq!(st, 200, "{v}");
    let items = v.as_array().unwrap();
    assert_ranked(items, "score", &scores);
    assert!(items[0].get("text").is_none());

    let (st, v, _) = srv.post(
        "/rerank",
        &json!({"query": q, "texts": docs, "raw_scores": true, "return_text": true, "truncate": null,
                "truncation_direction": "Right", "unknown_field": 1}),
    );
    assert_eq!(st, 200, "{v}");
    let items = v.as_array().unwrap();
    assert_ranked(items, "score", &logits);
    for it in items {
        assert_eq!(
            it["text"],
            json!(docs[it["index"].as_u64().unwrap() as usize])
        );
    }

    // A document over the window: truncate=false is refused in TEI's error shape; Left keeps
    // the end of the text and scores differently from Right.
    let best = (0..docs.len())
        .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
        .unwrap();
    let long = format!(
        "{} {}",
        "filler words about nothing at all.".repeat(120),
        docs[best]
    );
    let (st, v, _) = srv.post(
        "/rerank",
        &json!({"query": q, "texts": [long.clone()], "truncate": false}),
    );
    assert!(st == 400, "{st} {v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("truncation is disabled"),
        "{v}"
    );
    assert_eq!(v["error_type"], "Validation");
    // Filler first, then the relevant passage repeated past the window: Right keeps filler,
    // Left keeps the passage.
    let tail = format!(
        "{} {}",
        "filler words about nothing at all.".repeat(120),
        docs[best].repeat(10)
    );
    let (_, right, _) = srv.post("/rerank", &json!({"query": q, "texts": [tail.clone()]}));
    let (_, left, _) = srv.post(
        "/rerank",
        &json!({"query": q, "texts": [tail], "truncation_direction": "Left"}),
    );
    assert!(
        left[0]["score"].as_f64().unwrap() > right[0]["score"].as_f64().unwrap() + 0.1,
        "{left} vs {right}"
    );
}

#[test]
fn v1_body_satisfies_cohere_jina_and_voyage() {
    let srv = serve(&[
        "--model",
        &format!(
            "mini={}",
            shared().join("models/minilm-l6-rerank").display()
        ),
    ]);
    let (q, docs, scores, _) = reference_group();
    let (st, v, _) = srv.post(
        "/v1/rerank",
        &json!({"query": q, "documents": docs, "model": "mini"}),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "mini");
    assert!(v["id"].as_str().unwrap().len() >= 8);
    assert_ranked(v["results"].as_array().unwrap(), "relevance_score", &scores);
    assert_eq!(v["results"], v["data"]);
    let tokens = v["usage"]["total_tokens"].as_u64().unwrap();
    assert!(tokens > 100 && v["usage"]["prompt_tokens"].as_u64() == Some(tokens));
    assert_eq!(v["meta"]["api_version"]["version"], "1");
    assert_eq!(v["meta"]["billed_units"]["search_units"], 1);
    let best = &v["results"][0];
    assert_eq!(
        best["document"]["text"],
        json!(docs[best["index"].as_u64().unwrap() as usize])
    );

    // top_n (Cohere, Jina) and top_k (Voyage); return_documents false; nulls accepted.
    let (_, v, _) = srv.post(
        "/v1/rerank",
        &json!({"query": q, "documents": docs, "top_n": 2, "return_documents": false, "model": null,
                "rank_fields": null, "max_chunks_per_doc": null, "truncation": null}),
    );
    assert_eq!(v["results"].as_array().unwrap().len(), 2);
    assert!(v["results"][0].get("document").is_none());
    let (_, v, _) = srv.post(
        "/v1/rerank",
        &json!({"query": q, "documents": docs, "top_k": 1}),
    );
    assert_eq!(v["data"].as_array().unwrap().len(), 1);

    // Object documents: "text" by default, rank_fields otherwise; the object comes back.
    let objs: Vec<Value> = docs.iter().map(|d| json!({"text": d, "id": "x"})).collect();
    let (_, v, _) = srv.post("/v1/rerank", &json!({"query": q, "documents": objs}));
    assert_ranked(v["results"].as_array().unwrap(), "relevance_score", &scores);
    assert_eq!(v["results"][0]["document"]["id"], "x");
    let objs: Vec<Value> = docs.iter().map(|d| json!({"body": d})).collect();
    let (st, v, _) = srv.post(
        "/v1/rerank",
        &json!({"query": q, "documents": objs, "rank_fields": ["body"]}),
    );
    assert_eq!(st, 200, "{v}");

    // Unknown model: 404 naming the known ones.
    let (st, v, _) = srv.post(
        "/v1/rerank",
        &json!({"query": q, "documents": docs, "model": "rerank-v3.5"}),
    );
    assert_eq!(st, 404);
    assert!(
        v["message"].as_str().unwrap().contains("mini") && v["detail"].is_string(),
        "{v}"
    );
}

#[test]
fn v2_rerank_and_long_documents_are_chunked() {
    let srv = serve(&[]);
    let (q, docs, scores, _) = reference_group();
    let (st, v, _) = srv.post(
        "/v2/rerank",
        &json!({"model": "minilm-l6-rerank", "query": q, "documents": docs, "top_n": null, "max_tokens_per_doc": null}),
    );
    assert_eq!(st, 200, "{v}");
    assert_ranked(v["results"].as_array().unwrap(), "relevance_score", &scores);
    assert_eq!(v["meta"]["api_version"]["version"], "2");
    assert!(v["results"][0].get("document").is_none());

    // The relevant passage sits after ~700 tokens of filler: truncation never sees it, chunks do.
    let best = (0..docs.len())
        .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
        .unwrap();
    let long = format!(
        "{} {}",
        "the weather was mild and nothing happened.".repeat(80),
        docs[best]
    );
    let (_, tei, _) = srv.post("/rerank", &json!({"query": q, "texts": [long.clone()]}));
    let (_, v1, _) = srv.post(
        "/v1/rerank",
        &json!({"query": q, "documents": [long.clone()]}),
    );
    let (_, v2, _) = srv.post(
        "/v2/rerank",
        &json!({"query": q, "documents": [long.clone()]}),
    );
    let truncated = tei[0]["score"].as_f64().unwrap();
    let chunked = v1["results"][0]["relevance_score"].as_f64().unwrap();
    assert!(
        chunked > truncated + 0.1,
        "chunked {chunked} vs truncated {truncated}"
    );
    assert_eq!(
        v2["results"][0]["relevance_score"].as_f64().unwrap(),
        chunked
    );
    assert!(v1["usage"]["total_tokens"].as_u64().unwrap() > 700);
    // One chunk only, or a document cut to its first tokens: back to the truncated score.
    let (_, one, _) = srv.post(
        "/v1/rerank",
        &json!({"query": q, "documents": [long.clone()], "max_chunks_per_doc": 1}),
    );
    assert!((one["results"][0]["relevance_score"].as_f64().unwrap() - truncated).abs() < 0.05);
    let (_, cut, _) = srv.post(
        "/v2/rerank",
        &json!({"query": q, "documents": [long.clone()], "max_tokens_per_doc": 300}),
    );
    assert!(cut["results"][0]["relevance_score"].as_f64().unwrap() < chunked - 0.1);
    // Voyage's truncation: false refuses the over-long document.
    let (st, v, _) = srv.post(
        "/v1/rerank",
        &json!({"query": q, "documents": [long], "truncation": false}),
    );
    assert_eq!(st, 400);
    assert!(v["detail"].as_str().unwrap().contains("document 0"), "{v}");

    // The CLI applies the same policies through the same code (rank::long_docs): the same
    // long document gets the same score from `crossrank rerank` as from the server's routes.
    let dir = temp_dir("long-docs-cli");
    let input = dir.join("docs.jsonl");
    std::fs::write(&input, json!({ "text": long }).to_string() + "\n").unwrap();
    let cli = |policy: &str| -> Cmd {
        crossrank().args([
            "rerank",
            "-q",
            q.as_str(),
            "--input",
            input.to_str().unwrap(),
            "--json",
            "--long-docs",
            policy,
        ])
    };
    let score = |v: Value| v["results"][0]["score"].as_f64().unwrap();
    let cli_chunked = score(cli("chunk").json());
    let cli_truncated = score(cli("truncate").json());
    assert!(
        (cli_chunked - chunked).abs() < 1e-5,
        "cli chunk {cli_chunked} vs /v1/rerank {chunked}"
    );
    assert!(
        (cli_truncated - truncated).abs() < 1e-5,
        "cli truncate {cli_truncated} vs /rerank {truncated}"
    );
    let err = cli("reject").fails(1);
    assert!(
        err.contains("document 0 is") && err.contains("truncation is disabled"),
        "{err}"
    );
}

#[test]
fn errors_have_status_and_dialect_shape() {
    let dir = temp_dir("srv-errors");
    let cfg = dir.join("server.toml");
    std::fs::write(&cfg, "max_body_bytes = 100000\n").unwrap();
    let srv = serve(&[
        "--config",
        cfg.to_str().unwrap(),
        "--max-documents",
        "10000",
    ]);
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "/v1/rerank",
            json!({"query": "q", "documents": []}),
            400,
            "empty",
        ),
        (
            "/v2/rerank",
            json!({"query": "q", "documents": []}),
            400,
            "empty",
        ),
        ("/rerank", json!({"query": "q", "texts": []}), 400, "empty"),
        (
            "/v1/rerank",
            json!({"query": 5, "documents": ["a"]}),
            422,
            "\"query\" must be a string",
        ),
        (
            "/v1/rerank",
            json!({"query": "q", "documents": ["a", 7]}),
            422,
            "documents[1]",
        ),
        (
            "/rerank",
            json!({"query": "q", "texts": ["a", {"x": 1}]}),
            422,
            "texts[1]",
        ),
        (
            "/v2/rerank",
            json!({"documents": ["a"]}),
            422,
            "missing field \"query\"",
        ),
        (
            "/v1/rerank",
            json!({"query": "q", "documents": ["a"], "top_n": 0}),
            422,
            "top_n",
        ),
        (
            "/rerank",
            json!({"query": "q", "texts": ["a"], "truncation_direction": "Up"}),
            422,
            "truncation_direction",
        ),
    ];
    for (path, body, status, needle) in cases {
        let (st, v, _) = srv.post(path, &body);
        assert_eq!(st, status, "{path} {body}: {v}");
        let msg = match path {
            "/rerank" => {
                assert!(v["error_type"].is_string(), "{v}");
                v["error"].as_str().unwrap().to_string()
            }
            "/v1/rerank" => {
                assert_eq!(v["message"], v["detail"], "{v}");
                v["message"].as_str().unwrap().to_string()
            }
            _ => v["message"].as_str().unwrap().to_string(),
        };
        assert!(msg.contains(needle), "{path}: {msg:?} lacks {needle:?}");
    }
    // Invalid JSON: 400.
    let resp = Server::client()
        .post(format!("{}/v1/rerank", srv.url))
        .header("content-type", "application/json")
        .body("{\"query\": ")
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    // Too many documents: 413; an over-large body: 413.
    let many: Vec<String> = (0..10_001).map(|i| i.to_string()).collect();
    let (st, v, _) = srv.post("/v1/rerank", &json!({"query": "q", "documents": many}));
    assert_eq!(st, 413, "{v}");
    let big = "x".repeat(200_000);
    let (st, v, _) = srv.post("/v2/rerank", &json!({"query": "q", "documents": [big]}));
    assert_eq!(st, 413, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("100000 bytes"),
        "{v}"
    );
    // Unknown route: JSON 404.
    let (st, _) = srv.get("/v3/rerank");
    assert_eq!(st, 404);
}

#[test]
fn auth_requires_bearer_key() {
    let srv = serve(&["--api-key", "secret-1", "--api-key", "secret-2"]);
    let body = json!({"query": "q", "documents": ["a"]});
    let c = Server::client();
    let r = c
        .post(format!("{}/v1/rerank", srv.url))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.json::<Value>().unwrap()["message"]
        .as_str()
        .unwrap()
        .contains("Authorization"));
    let r = c
        .post(format!("{}/v1/rerank", srv.url))
        .bearer_auth("secret-3")
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = c
        .post(format!("{}/rerank", srv.url))
        .bearer_auth("nope")
        .json(&json!({"query": "q", "texts": ["a"]}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.json::<Value>().unwrap()["error_type"], "Unauthorized");
    let r = c
        .post(format!("{}/v1/rerank", srv.url))
        .bearer_auth("secret-2")
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        c.get(format!("{}/health", srv.url))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        c.get(format!("{}/info", srv.url))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        401
    );
}

#[test]
fn queue_full_is_429_with_retry_after_and_timeout_is_503() {
    // The engine's queue is what is tested: no pair-score cache in front of it.
    let srv = serve(&["--max-queue", "1", "--threads", "1", "--cache-mb", "0"]);
    let (q, docs) = w50();
    let big: Vec<String> = docs.iter().cycle().take(400).cloned().collect();
    let body = json!({"query": q, "texts": big});
    let results: Vec<(u16, Option<String>)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    let (st, _, h) = srv.post("/rerank", &body);
                    (
                        st,
                        h.get("retry-after")
                            .map(|v| v.to_str().unwrap().to_string()),
                    )
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(results.iter().any(|(s, _)| *s == 200), "{results:?}");
    let limited: Vec<_> = results.iter().filter(|(s, _)| *s == 429).collect();
    assert!(!limited.is_empty(), "{results:?}");
    // Retry-After is the time the backlog needs to drain, in whole seconds (at least 1).
    assert!(
        limited.iter().all(|(_, ra)| ra
            .as_deref()
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|v| v >= 1)),
        "{results:?}"
    );

    let srv = serve(&["--request-timeout-ms", "1"]);
    let (st, v, _) = srv.post("/v1/rerank", &json!({"query": q, "documents": docs}));
    assert_eq!(st, 503, "{v}");
    assert!(v["message"].as_str().unwrap().contains("1 ms"));
}

#[test]
fn info_metrics_openapi_and_a_thousand_documents() {
    // No cache: the engine itself must score copies alike wherever they are in the batch.
    let srv = serve(&["--cache-mb", "0"]);
    let (q, docs) = w50();
    let thousand: Vec<String> = docs.iter().cycle().take(1000).cloned().collect();
    let (st, v, _) = srv.post(
        "/v1/rerank",
        &json!({"query": q, "documents": thousand, "return_documents": false}),
    );
    assert_eq!(st, 200);
    let res = v["results"].as_array().unwrap();
    assert_eq!(res.len(), 1000);
    // Copies of one passage score the same wherever they are.
    let by_index: std::collections::HashMap<u64, f64> = res
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap(),
                r["relevance_score"].as_f64().unwrap(),
            )
        })
        .collect();
    for i in 0..1000u64 {
        assert_eq!(by_index[&i], by_index[&(i % 50)]);
    }
    let (st, info) = srv.get("/info");
    assert_eq!(st, 200);
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["models"][0]["name"], "minilm-l6-rerank");
    assert_eq!(info["limits"]["max_documents"], 10_000);
    // CI has no GPU: the default device (auto) put the model on the CPU, in f32.
    if crossrank_engine::backend::cuda::probe(0).is_err() {
        assert_eq!(info["models"][0]["device"], "cpu");
        assert_eq!(info["models"][0]["dtype"], "f32");
        assert_eq!(info["models"][0]["device_memory_bytes"], Value::Null);
    }
    let (_, metrics) = srv.get("/metrics");
    assert!(
        metrics.contains("crossrank_requests_total{route=\"/v1/rerank\",status=\"200\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("crossrank_batch_pairs_count{model=\"minilm-l6-rerank\"}"));
    assert!(metrics.contains("crossrank_queue_time_seconds_count{model=\"minilm-l6-rerank\"} 1"));
    let (st, spec) = srv.get("/openapi.json");
    assert_eq!(st, 200);
    let spec: Value = serde_json::from_str(&spec).unwrap();
    for p in [
        "/rerank",
        "/v1/rerank",
        "/v2/rerank",
        "/health",
        "/info",
        "/metrics",
    ] {
        assert!(spec["paths"].get(p).is_some(), "{p} missing from OpenAPI");
    }
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in metrics"))
}

#[test]
fn concurrent_requests_are_batched_and_correct() {
    // Admission by deadline off: all 16 requests are queued and batched together, however
    // slow the machine (one W50 request takes 0.3-3 s on the boxes seen).
    let srv = serve(&["--max-queue-ms", "0", "--cache-mb", "0"]);
    let (q, docs) = w50();
    let want = score_with_cli(&q, &docs, &[]);
    let body = json!({"query": q, "documents": docs, "return_documents": false});
    let responses: Vec<Value> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..16)
            .map(|_| s.spawn(|| srv.post("/v1/rerank", &body)))
            .collect();
        hs.into_iter()
            .map(|h| {
                let (st, v, _) = h.join().unwrap();
                assert_eq!(st, 200, "{v}");
                v
            })
            .collect()
    });
    for v in &responses {
        let res = v["results"].as_array().unwrap();
        assert_eq!(res.len(), 50);
        for r in res {
            let i = r["index"].as_u64().unwrap() as usize;
            assert!((r["relevance_score"].as_f64().unwrap() - want[i]).abs() <= 1e-6);
        }
    }
    let (_, m) = srv.get("/metrics");
    let batches = metric(
        &m,
        "crossrank_batch_pairs_count{model=\"minilm-l6-rerank\"}",
    );
    let pairs = metric(&m, "crossrank_batch_pairs_sum{model=\"minilm-l6-rerank\"}");
    assert_eq!(pairs, 16.0 * 50.0);
    // Batches mixed requests: on average more pairs per batch than one request has.
    assert!(pairs / batches > 50.0, "{pairs} pairs in {batches} batches");
}

#[test]
fn sigterm_finishes_the_request_in_flight() {
    // A drain deadline far above what the request needs on a busy machine.
    let mut srv = serve(&[
        "--threads",
        "1",
        "--shutdown-grace-ms",
        "300000",
        "--cache-mb",
        "0",
    ]);
    let (q, docs) = w50();
    let body =
        json!({"query": q, "texts": docs.iter().cycle().take(300).cloned().collect::<Vec<_>>()});
    let url = srv.url.clone();
    let h = std::thread::spawn(move || {
        let r = Server::client()
            .post(format!("{url}/rerank"))
            .json(&body)
            .send()
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().unwrap())
    });
    // Wait until the request is being worked on.
    let t0 = std::time::Instant::now();
    loop {
        let (_, m) = srv.get("/metrics");
        if m.contains("crossrank_queue_time_seconds_count") {
            break;
        }
        assert!(t0.elapsed().as_secs() < 60, "request never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let kill = Command::new("kill")
        .args(["-TERM", &srv.child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let (st, v) = h.join().unwrap();
    assert_eq!(st, 200);
    assert_eq!(v.as_array().unwrap().len(), 300);
    let status = srv.child.wait().unwrap();
    assert!(status.success(), "exit {status:?}");
}

#[test]
fn qwen3_reranker_is_served_on_every_route_with_and_without_instruction() {
    let dir = shared().join("fixtures/tiny-qwen3-reranker");
    let srv = serve(&["-m", &format!("qwen3={}", dir.display())]);
    let rows = jsonl(&dir.join("reference.jsonl"));
    let (_, info) = srv.get("/info");
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["models"][0]["template"], "qwen3-reranker", "{info}");
    // Five rows with the default instruction, then the rows that carry their own.
    let picked: Vec<&Value> = rows
        .iter()
        .filter(|r| r.get("instruction").is_none())
        .take(5)
        .chain(rows.iter().filter(|r| r.get("instruction").is_some()))
        .collect();
    assert!(picked.len() >= 10);
    for r in picked {
        let (q, p) = (r["query"].as_str().unwrap(), r["passage"].as_str().unwrap());
        let want = r["score"].as_f64().unwrap();
        let mut bodies = vec![
            ("/rerank", json!({"query": q, "texts": [p]}), "score"),
            (
                "/v1/rerank",
                json!({"query": q, "documents": [p]}),
                "relevance_score",
            ),
            (
                "/v2/rerank",
                json!({"model": "qwen3", "query": q, "documents": [p]}),
                "relevance_score",
            ),
        ];
        if let Some(inst) = r.get("instruction") {
            for b in bodies.iter_mut() {
                b.1["instruction"] = inst.clone();
            }
        }
        for (path, body, key) in bodies {
            let (st, v, _) = srv.post(path, &body);
            assert_eq!(st, 200, "{path}: {v}");
            let item = if path == "/rerank" {
                &v[0]
            } else {
                &v["results"][0]
            };
            let got = item[key].as_f64().unwrap();
            assert!(
                (got - want).abs() < 1e-4,
                "{path} {:?}: {got} vs reference {want}",
                r.get("instruction")
            );
        }
    }
}

#[test]
fn repeated_pairs_are_answered_from_the_pair_score_cache() {
    let srv = serve(&[]);
    let (q, docs) = w50();
    let want = score_with_cli(&q, &docs[..4], &[]);
    // Four passages, one of them twice.
    let texts = vec![
        docs[0].clone(),
        docs[1].clone(),
        docs[2].clone(),
        docs[0].clone(),
        docs[3].clone(),
    ];
    let body = json!({"query": q, "texts": texts, "raw_scores": true});
    let (st, first, _) = srv.post("/rerank", &body);
    assert_eq!(st, 200, "{first}");
    let (st, again, _) = srv.post("/rerank", &body);
    assert_eq!(st, 200, "{again}");
    // Bit-identical from the cache, and equal to the engine's own scores.
    assert_eq!(first, again);
    let (_, probs, _) = srv.post("/rerank", &json!({"query": q, "texts": texts}));
    for r in probs.as_array().unwrap() {
        let i = r["index"].as_u64().unwrap() as usize;
        let src = if i == 3 {
            0
        } else if i == 4 {
            3
        } else {
            i
        };
        assert!(
            (r["score"].as_f64().unwrap() - want[src]).abs() <= 1e-6,
            "{probs}"
        );
    }
    let (_, m) = srv.get("/metrics");
    // Request 1: 4 scored, the repeat a hit; request 2: 5 hits; request 3 (probabilities: the
    // same policy and pairs): 5 hits. Only request 1 reached the engine.
    assert_eq!(
        metric(
            &m,
            "crossrank_cache_misses_total{model=\"minilm-l6-rerank\"}"
        ),
        4.0
    );
    assert_eq!(
        metric(&m, "crossrank_cache_hits_total{model=\"minilm-l6-rerank\"}"),
        11.0
    );
    assert_eq!(
        metric(&m, "crossrank_cache_entries{model=\"minilm-l6-rerank\"}"),
        4.0
    );
    assert_eq!(
        metric(&m, "crossrank_batch_pairs_sum{model=\"minilm-l6-rerank\"}"),
        4.0
    );
    // Another long-document policy is another entry.
    let (st, _, _) = srv.post(
        "/rerank",
        &json!({"query": q, "texts": texts, "truncation_direction": "Left"}),
    );
    assert_eq!(st, 200);
    let (_, m) = srv.get("/metrics");
    assert_eq!(
        metric(
            &m,
            "crossrank_cache_misses_total{model=\"minilm-l6-rerank\"}"
        ),
        8.0
    );
    // Off with --cache-mb 0.
    let off = serve(&["--cache-mb", "0"]);
    let (_, m) = off.get("/metrics");
    assert!(!m.contains("crossrank_cache_hits_total"), "{m}");
}

//! Hosted reranker specs end to end against crossrank's own server on loopback, which speaks
//! the Cohere v2, Voyage, Jina, TEI and crossrank dialects: every spec must reproduce the local
//! model's scores, in `rerank`, `eval` and as a server route.

mod common;

use common::*;
use serde_json::{json, Value};
use std::process::Command;

fn rerank_json(
    reranker: Option<&str>,
    env: &[(&str, &str)],
    query: &str,
    input: &str,
) -> Vec<(u64, f64)> {
    let mut cmd = Command::new(bin());
    cmd.args(["rerank", "--query", query, "--input", input, "--json"]);
    if let Some(r) = reranker {
        cmd.args(["--reranker", r]);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{reranker:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["index"].as_u64().unwrap(), r["score"].as_f64().unwrap()))
        .collect()
}

#[test]
fn every_provider_spec_reproduces_the_local_model() {
    let srv = serve(&[]);
    let (q, docs) = w50();
    let dir = temp_dir("hosted-cli");
    let input = dir.join("docs.txt");
    std::fs::write(
        &input,
        docs.iter()
            .take(40)
            .map(|d| d.replace('\n', " ") + "\n")
            .collect::<String>(),
    )
    .unwrap();
    let input = input.to_str().unwrap();
    let local = rerank_json(None, &[], &q, input);
    let url = srv.url.as_str();
    let cases: Vec<(String, Vec<(&str, &str)>)> = vec![
        (
            "cohere:minilm-l6-rerank".into(),
            vec![("COHERE_BASE_URL", url), ("COHERE_API_KEY", "k")],
        ),
        (
            "voyage:minilm-l6-rerank".into(),
            vec![("VOYAGE_BASE_URL", url), ("VOYAGE_API_KEY", "k")],
        ),
        (
            "jina:minilm-l6-rerank".into(),
            vec![("JINA_BASE_URL", url), ("JINA_API_KEY", "k")],
        ),
        (format!("tei:{url}"), vec![]),
        (format!("crossrank:{url}#minilm-l6-rerank"), vec![]),
    ];
    for (spec, env) in &cases {
        let got = rerank_json(Some(spec), env, &q, input);
        assert_eq!(got.len(), local.len(), "{spec}");
        for ((gi, gs), (li, ls)) in got.iter().zip(&local) {
            assert_eq!(gi, li, "{spec}: order");
            assert!((gs - ls).abs() <= 1e-6, "{spec}: {gs} vs {ls}");
        }
    }
    // A missing key is named, and the command fails cleanly.
    let out = Command::new(bin())
        .args([
            "rerank",
            "-q",
            "x",
            "--input",
            input,
            "--reranker",
            "cohere:rerank-v3.5",
        ])
        .env_remove("COHERE_API_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("COHERE_API_KEY"));
}

#[test]
fn eval_and_server_routes_accept_hosted_rerankers() {
    let srv = serve(&[]);
    let dl = shared().join("data/trec-dl20");
    let args = |extra: &[&str]| {
        let mut a = vec![
            "eval".to_string(),
            "--rerank-file".into(),
            dl.join("bm25_top100_dl20.json").display().to_string(),
            "--qrels".into(),
            dl.join("qrels.dl20-passage.txt").display().to_string(),
            "--max-queries".into(),
            "4".into(),
            "--candidates".into(),
            "10".into(),
            "--latency-queries".into(),
            "1".into(),
            "--json".into(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let run = |a: Vec<String>| -> Value {
        let out = Command::new(bin()).args(a).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let local = run(args(&[]));
    let hosted = run(args(&["--reranker", &format!("tei:{}", srv.url)]));
    assert_eq!(hosted["reranker"], json!(format!("tei:{}", srv.url)));
    for m in ["ndcg@10", "p@5", "map"] {
        assert_eq!(
            local["stages"]["reranked"][m], hosted["stages"]["reranked"][m],
            "{m}"
        );
    }
    // A server whose model is another crossrank server.
    let front = serve(&["--model", &format!("upstream=crossrank:{}", srv.url)]);
    let (q, docs) = w50();
    let (st, v, _) = front.post(
        "/v1/rerank",
        &json!({"query": q, "documents": docs, "model": "upstream"}),
    );
    assert_eq!(st, 200, "{v}");
    let (_, direct, _) = srv.post("/v1/rerank", &json!({"query": q, "documents": docs}));
    assert_eq!(v["results"].as_array().unwrap().len(), 50);
    for (a, b) in v["results"]
        .as_array()
        .unwrap()
        .iter()
        .zip(direct["results"].as_array().unwrap())
    {
        assert_eq!(a["index"], b["index"]);
        assert!(
            (a["relevance_score"].as_f64().unwrap() - b["relevance_score"].as_f64().unwrap()).abs()
                <= 1e-6
        );
    }
}

//! Cascades end to end with the real model: a first stage that reads only the first tokens of
//! each pair (max_length 16) and a second that reads them whole, in the server (with a
//! deadline that cuts the second stage) and in the CLI (rerank, eval's K sweep).

mod common;

use common::*;
use serde_json::{json, Value};

const QUERY: &str = "where is the eiffel tower";

/// Documents whose opening words mislead a reader of 16 tokens: the keyword-stuffed ones open
/// with the query's words, the answers say it later.
fn docs() -> Vec<String> {
    [
        "Eiffel tower Eiffel tower Eiffel tower, and then a recipe: boil the pasta for ten minutes in salted water.",
        "Bananas are yellow. Among famous buildings, the Eiffel Tower stands in Paris, France, on the Champ de Mars.",
        "The Eiffel Tower tower tower. Unrelated: the stock market closed higher on Tuesday after the report.",
        "Paris landmarks guide: the Eiffel Tower is located on the Champ de Mars in Paris, France.",
        "Mount Everest is the highest mountain above sea level, in the Himalayas.",
        "Eiffel Eiffel tower tower words words words about nothing in particular at all.",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn model() -> String {
    repo().join("models/minilm-l6-rerank").display().to_string()
}

/// A server with `fast` (16 tokens), `precise` (512) and `cascade` = fast > precise@3.
fn cascade_server() -> Server {
    let dir = temp_dir("cascade-config");
    let cfg = dir.join("server.toml");
    let m = model();
    std::fs::write(
        &cfg,
        format!(
            "[[models]]\nname = \"cascade\"\nmodel = \"cascade:fast>precise@3\"\n\n\
             [[models]]\nname = \"fast\"\nmodel = \"{m}\"\nmax_length = 16\n\n\
             [[models]]\nname = \"precise\"\nmodel = \"{m}\"\n"
        ),
    )
    .unwrap();
    serve(&["--config", cfg.to_str().unwrap()])
}

/// Scores in input order from `model` on the TEI route (`/rerank`: long pairs truncated) or
/// the Cohere v1 route (`/v1/rerank`: long documents chunked, the best chunk kept).
fn scores(srv: &Server, route: &str, model: &str, docs: &[String]) -> Vec<f64> {
    let body = if route == "/rerank" {
        json!({"query": QUERY, "texts": docs, "model": model})
    } else {
        json!({"query": QUERY, "documents": docs, "model": model})
    };
    let (st, v, _) = srv.post(route, &body);
    assert_eq!(st, 200, "{v}");
    let (items, key) = match v.as_array() {
        Some(a) => (a.clone(), "score"),
        None => (v["results"].as_array().unwrap().clone(), "relevance_score"),
    };
    let mut out = vec![f64::NAN; docs.len()];
    for r in items {
        out[r["index"].as_u64().unwrap() as usize] = r[key].as_f64().unwrap();
    }
    out
}

/// What a cascade fast > precise@3 must answer: fast's best 3 in precise's order, then
/// fast's rest; and fast's own order.
fn expected(fast: &[f64], precise: &[f64]) -> (Vec<usize>, Vec<usize>) {
    let all: Vec<usize> = (0..fast.len()).collect();
    let fast_order = by_score(fast, &all);
    let mut want = by_score(precise, &fast_order[..3]);
    want.extend(&fast_order[3..]);
    assert_ne!(
        want, fast_order,
        "the constructed documents must make the second stage change the order"
    );
    (want, fast_order)
}

fn order(items: &Value) -> Vec<usize> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["index"].as_u64().unwrap() as usize)
        .collect()
}

fn by_score(s: &[f64], of: &[usize]) -> Vec<usize> {
    let mut v = of.to_vec();
    v.sort_by(|&a, &b| s[b].total_cmp(&s[a]).then(a.cmp(&b)));
    v
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} missing:\n{text}"))
}

#[test]
fn the_second_stage_reorders_the_first_stages_best_and_a_deadline_cuts_it() {
    let srv = cascade_server();
    let d = docs();
    // Each stage reads with the route's long-document policy: TEI truncates (the fast stage
    // sees 16 tokens of each pair) ...
    let fast = scores(&srv, "/rerank", "fast", &d);
    let precise = scores(&srv, "/rerank", "precise", &d);
    let (want, _) = expected(&fast, &precise);
    let (st, v, _) = srv.post(
        "/rerank",
        &json!({"query": QUERY, "texts": d, "model": "cascade"}),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(order(&v), want, "{v}");
    // ... Cohere v1 chunks (the fast stage reads every 16-token window, keeps the best).
    let fast = scores(&srv, "/v1/rerank", "fast", &d);
    let precise = scores(&srv, "/v1/rerank", "precise", &d);
    let (want, _) = expected(&fast, &precise);
    let (st, v, _) = srv.post(
        "/v1/rerank",
        &json!({"query": QUERY, "documents": d, "model": "cascade", "return_documents": false}),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(order(&v["results"]), want, "{v}");
    assert_eq!(v["cascade"]["final_stage"], 2, "{v}");
    assert_eq!(v["cascade"]["cut"], false);
    assert_eq!(v["cascade"]["stages"][0]["model"], "fast");
    assert_eq!(v["cascade"]["stages"][0]["documents"], 6);
    assert_eq!(v["cascade"]["stages"][1]["documents"], 3);
    let results = v["results"].as_array().unwrap();
    let mut prev = f64::INFINITY;
    for (rank, r) in results.iter().enumerate() {
        let i = r["index"].as_u64().unwrap() as usize;
        let stage_scores: Vec<f64> = r["stage_scores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_f64().unwrap())
            .collect();
        let s = r["relevance_score"].as_f64().unwrap();
        assert!(s < prev, "scores must follow the cascade's order: {v}");
        prev = s;
        assert!((stage_scores[0] - fast[i]).abs() < 1e-6, "{v}");
        if rank < 3 {
            assert_eq!(r["stage"], 2);
            assert!((stage_scores[1] - precise[i]).abs() < 1e-6, "{v}");
            assert!((s - precise[i]).abs() < 1e-6, "{v}");
        } else {
            assert_eq!(r["stage"], 1);
            assert_eq!(stage_scores.len(), 1);
        }
    }

    // A 1 ms budget is spent by the first stage (a new query: nothing cached): the answer is
    // its ranking, and says so.
    let (st, v, _) = srv.post(
        "/v2/rerank",
        &json!({"query": "eiffel tower location?", "documents": d, "model": "cascade",
                "deadline_ms": 1}),
    );
    assert_eq!(st, 200, "{v}");
    let first: Vec<f64> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["stage_scores"][0].as_f64().unwrap())
        .collect();
    assert!(first.windows(2).all(|w| w[0] >= w[1]), "{v}");
    assert_eq!(first.len(), d.len());
    assert_eq!(v["cascade"]["final_stage"], 1, "{v}");
    assert_eq!(v["cascade"]["cut"], true);
    assert_eq!(v["cascade"]["stages"][1]["ran"], false);
    assert!(v["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["stage"] == 1));

    // Budgets are bounded by the request timeout; other models ignore them.
    let (st, v, _) = srv.post(
        "/v1/rerank",
        &json!({"query": QUERY, "documents": d, "model": "cascade", "deadline_ms": 10_000_000}),
    );
    assert_eq!(st, 422, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("deadline_ms"),
        "{v}"
    );
    let (st, v, _) = srv.post(
        "/rerank",
        &json!({"query": QUERY, "texts": d, "model": "cascade", "deadline_ms": 0}),
    );
    assert_eq!(st, 422, "{v}");
    let (st, v, _) = srv.post(
        "/rerank",
        &json!({"query": QUERY, "texts": d, "model": "precise", "deadline_ms": 5}),
    );
    assert_eq!(st, 200, "{v}");
    assert!(v[0].get("stage").is_none(), "{v}");

    let (_, info) = srv.get("/info");
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["models"][0]["cascade"][1]["model"], "precise");
    assert_eq!(info["models"][0]["cascade"][1]["rescores_best"], 3);
    let (_, m) = srv.get("/metrics");
    // The 422 was refused before scoring; the TEI request with deadline 0 too.
    let series = "crossrank_cascade_requests_total{model=\"cascade\",final_stage=";
    assert_eq!(metric(&m, &format!("{series}\"2\"}}")), 2.0, "{m}");
    assert_eq!(metric(&m, &format!("{series}\"1\"}}")), 1.0, "{m}");
    assert_eq!(
        metric(&m, "crossrank_cascade_cut_total{model=\"cascade\"}"),
        1.0
    );
}

#[test]
fn a_cascade_naming_a_model_that_is_not_served_fails_at_start() {
    let dir = temp_dir("cascade-bad-config");
    let cfg = dir.join("server.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[models]]\nname = \"c\"\nmodel = \"cascade:fast>nope@3\"\n\n\
             [[models]]\nname = \"fast\"\nmodel = \"{}\"\n",
            model()
        ),
    )
    .unwrap();
    let err = crossrank()
        .args(["serve", "--port", "0", "--config", cfg.to_str().unwrap()])
        .fails(1);
    assert!(err.contains("\"nope\" is not a served model"), "{err}");
    let err = crossrank()
        .args(["rerank", "--query", "q", "--model", "cascade:a>b@5>c@9"])
        .stdin("x\n")
        .fails(1);
    assert!(err.contains("more documents than"), "{err}");
}

#[test]
fn the_cli_runs_cascades_with_per_stage_options() {
    let d = docs();
    let m = model();
    let input = temp_dir("cascade-cli").join("docs.txt");
    std::fs::write(&input, d.join("\n") + "\n").unwrap();
    let run = |spec: &str| -> Value {
        crossrank()
            .args(["rerank", "--query", QUERY, "--json", "--model", spec])
            .args(["--input", input.to_str().unwrap()])
            .json()
    };
    let order = |v: &Value| order(&v["results"]);
    let cascade = run(&format!("cascade:{m}[max_length=16]>{m}@3"));
    // A cascade whose stages are the same model is that model (every document rescored alike).
    let same = run(&format!("cascade:{m}[max_length=16]>{m}[max_length=16]@6"));
    let alone = crossrank()
        .args(["rerank", "--query", QUERY, "--json", "--max-length", "16"])
        .args(["--input", input.to_str().unwrap()])
        .json();
    assert_eq!(order(&same), order(&alone));
    let full = crossrank()
        .args(["rerank", "--query", QUERY, "--json"])
        .args(["--input", input.to_str().unwrap()])
        .json();
    let f = order(&alone);
    let full_scores: Vec<f64> = {
        let mut s = vec![0.0; d.len()];
        for r in full["results"].as_array().unwrap() {
            s[r["index"].as_u64().unwrap() as usize] = r["score"].as_f64().unwrap();
        }
        s
    };
    let mut want = by_score(&full_scores, &f[..3]);
    want.extend(&f[3..]);
    assert_eq!(order(&cascade), want, "{cascade}");
    assert_eq!(cascade["results"][0]["stage"], 2);
    assert_eq!(cascade["results"][5]["stage"], 1);
    let err = crossrank()
        .args(["rerank", "--query", QUERY, "--model"])
        .arg(format!("cascade:{m}[speed=11]>{m}@3"))
        .args(["--input", input.to_str().unwrap()])
        .fails(1);
    assert!(err.contains("unknown option \"speed=11\""), "{err}");
}

#[test]
fn eval_sweeps_the_cascades_k_beside_each_model_alone() {
    let dl20 = shared().join("data/trec-dl20");
    let m = model();
    let v = crossrank()
        .args(["eval", "--json", "--max-queries", "8", "--candidates", "20"])
        .args(["--latency-queries", "1", "--cascade-k", "5,20"])
        .arg("--rerank-file")
        .arg(dl20.join("bm25_top100_dl20.json"))
        .arg("--qrels")
        .arg(dl20.join("qrels.dl20-passage.txt"))
        .arg("--model")
        .arg(format!("cascade:{m}[max_length=16]>{m}@10"))
        .json();
    let rows = v["cascade_sweep"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert_eq!(rows[2]["k"], 5);
    let ndcg = |r: &Value| r["metrics"]["ndcg@10"].as_f64().unwrap();
    // The last stage on all 20 candidates ranks them as the precise model alone does.
    assert!((ndcg(&rows[3]) - ndcg(&rows[1])).abs() < 1e-9, "{rows:?}");
    assert!(rows
        .iter()
        .all(|r| r["rerank_ms_per_query"].as_f64().unwrap() > 0.0));
}

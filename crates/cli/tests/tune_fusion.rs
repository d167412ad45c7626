//! `crossrank eval --tune-fusion`: how much of the first stage to keep, fitted on half of
//! SciFact's queries (where this model's reranking loses to BM25) and reported on the other
//! half; the written setting is what `serve --fusion` applies to collection searches.

mod common;

use common::*;
use serde_json::{json, Value};

#[test]
fn fusion_is_fitted_on_half_the_queries_and_the_server_applies_the_file() {
    let dir = temp_dir("tune-fusion");
    let file = dir.join("fusion.toml");
    let v = crossrank()
        .args([
            "eval",
            "--json",
            "--max-queries",
            "40",
            "--candidates",
            "20",
        ])
        .args(["--latency-queries", "1", "--tune-fusion", "--fusion-output"])
        .arg(&file)
        .arg("--beir")
        .arg(shared().join("data/scifact"))
        .json();
    let t = &v["tuned_fusion"];
    assert_eq!(
        (t["tuned_on"].as_u64(), t["held_out"].as_u64()),
        (Some(20), Some(20))
    );
    assert_eq!(t["metric"], "ndcg@10");
    let fit = |k: &str| t["fit_metrics"][k].as_f64().unwrap();
    // The grid holds the first stage's order (weight 0), the reranker's (weight 1) and the
    // default: the fitted setting is at least as good as each on the queries it was fitted on.
    for k in ["first_stage", "reranked", "default_fusion"] {
        assert!(fit("tuned_fusion") >= fit(k) - 1e-12, "{k}: {t}");
    }
    assert!((fit("tuned_fusion") - t["tuned_metric"].as_f64().unwrap()).abs() < 1e-12);
    for k in ["first_stage", "reranked", "default_fusion", "tuned_fusion"] {
        let m = t["held_out_metrics"][k].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&m), "{k}: {t}");
    }
    // The file is a fusion TOML with the fitted setting.
    let text = std::fs::read_to_string(&file).unwrap();
    let toml: toml::Value = toml::from_str(&text).unwrap();
    let fs = &toml["first_stage"];
    assert_eq!(
        fs["rrf_k"].as_float(),
        t["setting"]["rrf_k"].as_f64(),
        "{text}"
    );
    assert_eq!(
        fs["reranker_weight"].as_float(),
        t["setting"]["reranker_weight"].as_f64()
    );

    // serve --fusion FILE: searches without their own fusion use it.
    let srv = serve(&[
        "--fusion",
        file.to_str().unwrap(),
        "--collections",
        dir.join("collections").to_str().unwrap(),
    ]);
    let (st, v, _) = srv.post(
        "/v1/collections/c/documents",
        &json!({"documents": [{"id": "a", "text": "farmers move uphill when the delta floods"},
                              {"id": "b", "text": "the delta floods every spring"}]}),
    );
    assert_eq!(st, 200, "{v}");
    let search = |body: Value| {
        let (st, v, _) = srv.post("/v1/collections/c/search", &body);
        assert_eq!(st, 200, "{v}");
        v["results"][0]["breakdown"].clone()
    };
    let b = search(json!({"query": "delta floods", "retriever": "bm25"}));
    assert!(b["rank_fusion"].as_f64().is_some(), "{b}");
    let b = search(json!({"query": "delta floods", "retriever": "bm25", "fusion": {}}));
    assert!(b.get("rank_fusion").is_none(), "{b}");
}

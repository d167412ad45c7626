//! Abstention: `crossrank calibrate` on WikiQA dev meets its target precision on WikiQA test,
//! and an off-topic query abstains at the calibrated threshold.

mod common;

use common::*;
use serde_json::{json, Value};
use std::process::Command;

fn run(args: &[&str]) -> Value {
    crossrank().args(args).json()
}

#[test]
fn calibrated_threshold_holds_on_test_and_off_topic_queries_abstain() {
    let w = shared().join("data/wikiqa");
    let cal = run(&[
        "calibrate",
        "--wikiqa",
        w.join("WikiQA-dev.tsv.gz").to_str().unwrap(),
        "--check",
        w.join("WikiQA-test.tsv.gz").to_str().unwrap(),
        "--target-precision",
        "0.7",
        "--json",
    ]);
    let min_score = cal["min_score"].as_f64().expect("a threshold reaching 0.7");
    assert!(cal["calibration"]["precision"].as_f64().unwrap() >= 0.7);
    let check = &cal["check"];
    assert!(
        check["precision"].as_f64().unwrap() >= 0.7,
        "test precision {check}"
    );
    assert!(check["coverage"].as_f64().unwrap() > 0.3, "{check}");
    let curve = cal["curve"].as_array().unwrap();
    assert!(curve.len() > 50 && curve.last().unwrap()["coverage"] == 1.0);

    // Passages about one topic, an unrelated question: no confident answer, best candidate given.
    let dir = temp_dir("abstain");
    let docs = dir.join("docs.txt");
    let (_, passages) = w50();
    std::fs::write(
        &docs,
        passages
            .iter()
            .take(20)
            .map(|p| p.replace('\n', " ") + "\n")
            .collect::<String>(),
    )
    .unwrap();
    let ms = format!("{min_score}");
    let off = run(&[
        "rerank",
        "-q",
        "how long should I proof sourdough bread dough overnight",
        "-i",
        docs.to_str().unwrap(),
        "--min-score",
        &ms,
        "--json",
    ]);
    assert_eq!(off["answerable"], false, "{off}");
    assert!(off["results"].as_array().unwrap().is_empty());
    assert!(off["best"]["score"].as_f64().unwrap() < min_score);
    let (q, _) = w50();
    let on = run(&[
        "rerank",
        "-q",
        &q,
        "-i",
        docs.to_str().unwrap(),
        "--min-score",
        "0.0",
        "--json",
    ]);
    assert_eq!(on["answerable"], true);
    assert_eq!(on["results"].as_array().unwrap().len(), 20);
}

#[test]
fn calibrate_reads_labelled_jsonl_with_unanswerable_questions() {
    // Six questions with one right passage, three whose passages are all off-topic.
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/labelled.jsonl");
    let cal = run(&[
        "calibrate",
        "--labelled",
        file,
        "--target-precision",
        "1.0",
        "--confidence-z",
        "0",
        "--json",
    ]);
    assert_eq!(cal["questions"], 9);
    let c = &cal["calibration"];
    assert_eq!(c["precision"].as_f64(), Some(1.0), "{cal}");
    // All answerable questions answered, every unanswerable one declined.
    assert!(
        (c["coverage"].as_f64().unwrap() - 6.0 / 9.0).abs() < 1e-9,
        "{cal}"
    );

    let dir = temp_dir("labelled-bad");
    let bad = dir.join("bad.jsonl");
    std::fs::write(
        &bad,
        r#"{"query": "q", "documents": ["a", "b"], "relevant": [2]}"#,
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["calibrate", "--labelled", bad.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("bad.jsonl") && err.contains("relevant index 2 is out of range"),
        "{err}"
    );
}

#[test]
fn a_platt_calibration_fitted_on_dev_lowers_test_ece_and_the_server_applies_it() {
    let w = shared().join("data/wikiqa");
    let dir = temp_dir("calibration");
    let file = dir.join("calibration.json");
    let cal = run(&[
        "calibrate",
        "--wikiqa",
        w.join("WikiQA-dev.tsv.gz").to_str().unwrap(),
        "--check",
        w.join("WikiQA-test.tsv.gz").to_str().unwrap(),
        "--fit",
        "platt",
        "--output",
        file.to_str().unwrap(),
        "--report",
        dir.to_str().unwrap(),
        "--tune-fusion",
        "--fusion-output",
        dir.join("fusion.toml").to_str().unwrap(),
        "--target-precision",
        "0.7",
        "--json",
    ]);
    let t = &cal["tuned_fusion"];
    let fit = |k: &str| t["fit_metrics"][k].as_f64().unwrap();
    assert!(fit("tuned_fusion") >= fit("reranked") - 1e-12, "{t}");
    assert!(
        t["held_out_metrics"]["tuned_fusion"].as_f64().is_some(),
        "{t}"
    );
    let fusion = std::fs::read_to_string(dir.join("fusion.toml")).unwrap();
    assert!(fusion.contains("[first_stage]"), "{fusion}");
    let r = &cal["reliability_check"];
    let html = std::fs::read_to_string(dir.join("calibration.html")).unwrap();
    assert!(
        html.contains("<svg") && html.contains("reliability"),
        "{html}"
    );
    assert!(html.contains(&format!("{:.4}", r["calibrated"]["ece"].as_f64().unwrap())));
    let (before, after) = (
        r["uncalibrated"]["ece"].as_f64().unwrap(),
        r["calibrated"]["ece"].as_f64().unwrap(),
    );
    assert!(
        after < before,
        "held-out ECE {after} calibrated vs {before}: {r}"
    );
    assert!(r["pairs"].as_u64().unwrap() > 1000);
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(written["method"], "platt");
    let (a, b) = (
        written["a"].as_f64().unwrap(),
        written["b"].as_f64().unwrap(),
    );
    assert!(
        a > 0.0,
        "a calibration must keep the ranking (monotone): a = {a}"
    );
    assert!(cal["check_with_unanswerable"]["coverage"]
        .as_f64()
        .is_some());
    assert!(cal["questions_needed"]["questions"].as_u64().unwrap() > 0);

    // The server applies it: score = sigmoid(a * logit + b), the logit unchanged.
    let cfg = dir.join("server.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[models]]\nname = \"m\"\nmodel = \"{}\"\ncalibration = \"{}\"\n",
            repo().join("models/minilm-l6-rerank").display(),
            file.display()
        ),
    )
    .unwrap();
    let srv = serve(&["--config", cfg.to_str().unwrap()]);
    let (q, docs) = w50();
    let texts: Vec<String> = docs[..8].iter().map(|d| d.replace('\n', " ")).collect();
    let (_, probs, _) = srv.post("/rerank", &json!({"query": q, "texts": texts}));
    let (_, logits, _) = srv.post(
        "/rerank",
        &json!({"query": q, "texts": texts, "raw_scores": true}),
    );
    let logit_of = |i: u64| {
        logits
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["index"] == i)
            .unwrap()["score"]
            .as_f64()
            .unwrap()
    };
    let uncalibrated = score_with_cli(&q, &texts, &[]);
    for r in probs.as_array().unwrap() {
        let i = r["index"].as_u64().unwrap();
        let x = logit_of(i);
        let want = 1.0 / (1.0 + (-(a * x + b)).exp());
        assert!(
            (r["score"].as_f64().unwrap() - want).abs() < 1e-5,
            "{probs}"
        );
        let raw = uncalibrated[i as usize];
        assert!(
            (1.0 / (1.0 + (-x).exp()) - raw).abs() < 1e-5,
            "the logit is the model's"
        );
    }
    // So does the CLI, with --calibration FILE.
    let input = dir.join("docs.txt");
    std::fs::write(&input, texts.join("\n") + "\n").unwrap();
    let cli = run(&[
        "rerank",
        "-q",
        &q,
        "-i",
        input.to_str().unwrap(),
        "--calibration",
        file.to_str().unwrap(),
        "--json",
    ]);
    for r in cli["results"].as_array().unwrap() {
        let p = uncalibrated[r["index"].as_u64().unwrap() as usize];
        let want = 1.0 / (1.0 + (-(a * (p / (1.0 - p)).ln() + b)).exp());
        assert!((r["score"].as_f64().unwrap() - want).abs() < 1e-4, "{cli}");
    }
    // Cohere v1 marks the response calibrated and keeps the model's own probability.
    let (_, v1, _) = srv.post("/v1/rerank", &json!({"query": q, "documents": texts}));
    assert_eq!(v1["calibrated"], true, "{v1}");
    for r in v1["results"].as_array().unwrap() {
        let raw = uncalibrated[r["index"].as_u64().unwrap() as usize];
        assert!(
            (r["raw_score"].as_f64().unwrap() - raw).abs() < 1e-5,
            "{v1}"
        );
    }
    let (_, info) = srv.get("/info");
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["models"][0]["calibrated"], true, "{info}");
    assert_eq!(info["models"][0]["calibration"]["method"], "platt");
}

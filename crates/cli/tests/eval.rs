//! `crossrank eval` end to end: trec_eval parity (pytrec_eval in a venv), the TREC DL 2020
//! figures of the model card, every input kind, and the HTML report in a real headless Chromium.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn eval(args: &[&str]) -> Value {
    crossrank().arg("eval").args(args).arg("--json").json()
}

fn dl20(file: &str) -> String {
    shared()
        .join("data/trec-dl20")
        .join(file)
        .display()
        .to_string()
}

#[test]
#[ignore = "e2e: pytrec_eval from PyPI, all of TREC DL 2020 (minutes)"]
fn dl20_metrics_match_trec_eval_and_the_model_card() {
    let runs = temp_dir("eval-runs");
    let r = eval(&[
        "--rerank-file",
        &dl20("bm25_top100_dl20.json"),
        "--qrels",
        &dl20("qrels.dl20-passage.txt"),
        "--candidates",
        "100",
        "--k",
        "1,3,5,10",
        "--latency-queries",
        "2",
        "--run-dir",
        runs.to_str().unwrap(),
    ]);
    assert_eq!(r["queries"], 54);
    assert_eq!(r["relevance_level"], 2);
    let first = r["stages"]["first_stage"]["ndcg@10"].as_f64().unwrap();
    let reranked = r["stages"]["reranked"]["ndcg@10"].as_f64().unwrap();
    assert!((first - 0.4796).abs() < 5e-5, "BM25 nDCG@10 {first}");
    assert!(
        (reranked - 0.5793).abs() <= 0.005,
        "reranked nDCG@10 {reranked} vs model card 0.5793"
    );
    let cmp = &r["comparisons"]["reranked"];
    assert_eq!(
        cmp["wins"].as_u64().unwrap()
            + cmp["ties"].as_u64().unwrap()
            + cmp["losses"].as_u64().unwrap(),
        54
    );
    assert!(cmp["p_value"].as_f64().unwrap() < 0.05);

    // Every metric of every stage against trec_eval (pytrec_eval), mean and per query.
    let py = venv("trec-venv", &["pytrec-eval-terrier"]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/trec_parity.py");
    let stages = ["first_stage", "reranked", "fused"];
    let files: Vec<String> = stages
        .iter()
        .map(|s| runs.join(format!("{s}.trec")).display().to_string())
        .collect();
    let out = Command::new(&py)
        .arg(&script)
        .args([
            dl20("qrels.dl20-passage.txt"),
            "2".into(),
            "1,3,5,10".into(),
        ])
        .args(&files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut compared = 0;
    for stage in stages {
        let want = &reference[stage]["mean"];
        for (metric, value) in want.as_object().unwrap() {
            let got = r["stages"][stage][metric]
                .as_f64()
                .unwrap_or_else(|| panic!("{stage} {metric} missing"));
            assert!(
                (got - value.as_f64().unwrap()).abs() <= 1e-6,
                "{stage} {metric}: {got} vs trec_eval {value}"
            );
            compared += 1;
        }
        for (qid, m) in reference[stage]["per_query"].as_object().unwrap() {
            let got = r["per_query"][qid][stage].as_f64().unwrap();
            assert!(
                (got - m["ndcg@10"].as_f64().unwrap()).abs() <= 1e-6,
                "{stage} query {qid}"
            );
        }
    }
    assert_eq!(compared, 3 * 17);
}

#[test]
fn trec_run_with_docs_loads_like_the_json() {
    // The same candidates given as run + docs + topics evaluate identically to the JSON form.
    let dir = temp_dir("eval-trecrun");
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(dl20("bm25_top100_dl20.json")).unwrap())
            .unwrap();
    let mut docs = String::new();
    let mut topics = String::new();
    for item in json.as_array().unwrap() {
        let hits = item["hits"].as_array().unwrap();
        topics += &format!("{}\t{}\n", hits[0]["qid"], item["query"].as_str().unwrap());
        for h in hits {
            docs += &format!(
                "{}\n",
                serde_json::json!({"id": h["docid"], "text": h["content"]})
            );
        }
    }
    std::fs::write(dir.join("docs.jsonl"), docs).unwrap();
    std::fs::write(dir.join("topics.tsv"), topics).unwrap();
    let common = [
        "--qrels",
        &dl20("qrels.dl20-passage.txt"),
        "--candidates",
        "5",
        "--k",
        "5,10",
        "--latency-queries",
        "1",
    ];
    let a = eval(
        &[
            &["--rerank-file", &dl20("bm25_top100_dl20.json")][..],
            &common,
        ]
        .concat(),
    );
    let b = eval(
        &[
            &[
                "--rerank-file",
                &dl20("bm25_run_dl20.trec"),
                "--docs",
                dir.join("docs.jsonl").to_str().unwrap(),
                "--topics",
                dir.join("topics.tsv").to_str().unwrap(),
            ][..],
            &common,
        ]
        .concat(),
    );
    assert_eq!(a["queries"], b["queries"]);
    for stage in ["first_stage", "reranked"] {
        for m in ["ndcg@10", "p@5", "map"] {
            let (x, y) = (
                a["stages"][stage][m].as_f64().unwrap(),
                b["stages"][stage][m].as_f64().unwrap(),
            );
            assert!((x - y).abs() < 1e-9, "{stage} {m}: {x} vs {y}");
        }
    }
}

#[test]
fn wikiqa_and_beir_inputs() {
    let w = eval(&[
        "--wikiqa",
        shared()
            .join("data/wikiqa/WikiQA-test.tsv.gz")
            .to_str()
            .unwrap(),
        "--max-queries",
        "40",
        "--candidates",
        "30",
        "--latency-queries",
        "1",
    ]);
    assert_eq!(w["queries"], 40);
    assert_eq!(w["relevance_level"], 1);
    let wr = w["stages"]["reranked"]["mrr@10"].as_f64().unwrap();
    let wf = w["stages"]["first_stage"]["mrr@10"].as_f64().unwrap();
    assert!(
        wr > wf,
        "reranking WikiQA candidates should help: {wr} vs {wf}"
    );
    let b = eval(&[
        "--beir",
        shared().join("data/scifact").to_str().unwrap(),
        "--max-queries",
        "8",
        "--candidates",
        "5,10",
        "--latency-queries",
        "1",
    ]);
    assert_eq!(b["queries"], 8);
    assert!(
        b["stages"]["first_stage"]["recall@10"].as_f64().unwrap() > 0.5,
        "{b}"
    );
    assert_eq!(b["sweep"].as_array().unwrap().len(), 2);
    assert!(b["dataset"].as_str().unwrap().contains("BM25"));
}

fn chromium() -> String {
    for c in [
        std::env::var("CHROMIUM").unwrap_or_default(),
        "chromium".into(),
        "chromium-browser".into(),
        "google-chrome".into(),
    ] {
        if !c.is_empty()
            && Command::new(&c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        {
            return c;
        }
    }
    panic!("no chromium found: install Debian's chromium (.ci/run does) or set CHROMIUM");
}

#[test]
#[ignore = "e2e: needs Chromium"]
fn html_report_renders_in_headless_chromium() {
    let dir = temp_dir("eval-report");
    let rep = dir.join("report");
    eval(&[
        "--rerank-file",
        &dl20("bm25_top100_dl20.json"),
        "--qrels",
        &dl20("qrels.dl20-passage.txt"),
        "--max-queries",
        "6",
        "--candidates",
        "5,10,20",
        "--latency-queries",
        "2",
        "--report",
        rep.to_str().unwrap(),
    ]);
    let md = std::fs::read_to_string(rep.join("report.md")).unwrap();
    assert!(md.contains("| first_stage |") && md.contains("## Candidate sweep"));
    let html = rep.join("report.html");
    let browser = chromium();
    let flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ];
    let profile = dir.join("profile");
    let url = format!("file://{}", html.display());
    // The DOM after rendering: three charts with their data points.
    let dom = Command::new(&browser)
        .args(flags)
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", &url])
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout);
    for id in ["quality", "latency", "deltas"] {
        assert!(
            dom.contains(&format!("<svg id=\"{id}\"")),
            "chart {id} missing from the rendered DOM"
        );
    }
    assert!(
        dom.matches("class=\"pt\"").count() >= 3 * 3 + 3,
        "data points missing"
    );
    assert!(dom.matches("class=\"bar\"").count() == 20);
    // A screenshot: the reranked series' colour (#2a6fdb) and the histogram's green are drawn.
    let shot = dir.join("report.png");
    let st = Command::new(&browser)
        .args(flags)
        .arg(format!("--user-data-dir={}", profile.display()))
        .args([
            "--window-size=1300,1100",
            &format!("--screenshot={}", shot.display()),
            &url,
        ])
        .output()
        .unwrap();
    assert!(
        st.status.success() && shot.exists(),
        "screenshot failed: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let count = |rgb: [u8; 3]| {
        buf[..info.buffer_size()]
            .chunks(channels)
            .filter(|p| {
                p[..3]
                    .iter()
                    .zip(rgb)
                    .all(|(a, b)| (*a as i32 - b as i32).abs() <= 12)
            })
            .count()
    };
    assert!(
        count([0x2a, 0x6f, 0xdb]) > 50,
        "no reranked series pixels in the screenshot"
    );
    assert!(
        count([0x22, 0xaa, 0x77]) + count([0xcc, 0x44, 0x44]) > 200,
        "no histogram bars in the screenshot"
    );
}

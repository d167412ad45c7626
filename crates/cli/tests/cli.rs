//! The `crossrank` binary end to end, as a spawned process, against reference fixtures.

mod common;

use common::*;
use crossrank_testkit::describe;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

/// `crossrank ARGS` with `stdin` and extra environment: the command line and its output.
fn crossrank_with(args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> (String, Output) {
    let mut cmd = crossrank().args(args).stdin(stdin.unwrap_or(""));
    for (k, v) in env {
        cmd = cmd.env(k, v);
    }
    cmd.output()
}

/// Expects success; returns stdout, or panics with the command, stdout and stderr.
fn stdout(ran: &(String, Output)) -> String {
    let (line, o) = ran;
    assert!(o.status.success(), "{}", describe(line, o));
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// Runs and expects exit 1 without a panic; returns stderr.
fn fails(args: &[&str], stdin: Option<&str>) -> String {
    crossrank().args(args).stdin(stdin.unwrap_or("")).fails(1)
}

/// A JSONL pairs file from fixture rows.
fn pairs_file(dir: &Path, rows: &[Value]) -> PathBuf {
    let p = dir.join("pairs.jsonl");
    let text: String = rows
        .iter()
        .map(|r| {
            serde_json::json!({"query": r["query"], "passage": r["passage"]}).to_string() + "\n"
        })
        .collect();
    std::fs::write(&p, text).unwrap();
    p
}

fn score_lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn score_default_model_matches_reference_in_input_order() {
    let rows = jsonl(&shared().join("fixtures/minilm-l6-rerank.pairs.jsonl"));
    let dir = temp_dir("score");
    let file = pairs_file(&dir, &rows);
    // No --model: the default model bundled in the repository.
    let out = score_lines(&stdout(&crossrank_with(
        &["score", "--pairs", file.to_str().unwrap()],
        None,
        &[],
    )));
    assert_eq!(out.len(), rows.len());
    for (i, (o, r)) in out.iter().zip(&rows).enumerate() {
        let d = (o["logit"].as_f64().unwrap() - r["logit"].as_f64().unwrap()).abs();
        assert!(d <= 1e-4, "line {}: logit off by {d}", i + 1);
        assert!((o["score"].as_f64().unwrap() - r["score"].as_f64().unwrap()).abs() <= 1e-5);
    }
}

#[test]
fn score_two_labels_prints_both_logits() {
    let fx = shared().join("fixtures/tiny-bert-2label");
    let rows = jsonl(&fx.join("reference.jsonl"));
    let dir = temp_dir("score2");
    let file = pairs_file(&dir, &rows);
    let out = score_lines(&stdout(&crossrank_with(
        &[
            "score",
            "--model",
            fx.to_str().unwrap(),
            "--pairs",
            file.to_str().unwrap(),
            "--batch-size",
            "3",
        ],
        None,
        &[],
    )));
    assert_eq!(out.len(), rows.len());
    for (o, r) in out.iter().zip(&rows) {
        assert!(o.get("logit").is_none());
        let got = o["logits"].as_array().unwrap();
        let want = r["logits"].as_array().unwrap();
        assert_eq!(got.len(), 2);
        for (g, w) in got.iter().zip(want) {
            assert!((g.as_f64().unwrap() - w.as_f64().unwrap()).abs() <= 1e-4);
        }
        assert!((o["score"].as_f64().unwrap() - r["score"].as_f64().unwrap()).abs() <= 1e-5);
    }
}

#[test]
fn every_kernel_isa_matches_reference() {
    // The run-time dispatch must give reference scores on any x86-64, not only this CPU's best.
    let rows = jsonl(&shared().join("fixtures/minilm-l6-rerank.pairs.jsonl"));
    let dir = temp_dir("isa");
    let subset: Vec<Value> = rows.iter().step_by(5).cloned().collect();
    let file = pairs_file(&dir, &subset);
    for isa in ["avx2", "portable"] {
        let out = score_lines(&stdout(&crossrank_with(
            &["score", "--pairs", file.to_str().unwrap()],
            None,
            &[("CROSSRANK_ISA", isa)],
        )));
        for (o, r) in out.iter().zip(&subset) {
            let d = (o["logit"].as_f64().unwrap() - r["logit"].as_f64().unwrap()).abs();
            assert!(d <= 1e-4, "{isa}: logit off by {d}");
        }
    }
}

#[test]
fn rerank_orders_like_the_reference() {
    let rows = jsonl(&shared().join("fixtures/minilm-l6-rerank.pairs.jsonl"));
    let query = rows[0]["query"].as_str().unwrap();
    let same: Vec<&Value> = rows
        .iter()
        .filter(|r| r["query"] == rows[0]["query"])
        .collect();
    assert!(
        same.len() >= 3,
        "fixture has several passages for the first query"
    );
    let input: String = same
        .iter()
        .map(|r| serde_json::json!({"text": r["passage"], "id": "x"}).to_string() + "\n")
        .collect();
    let out: Value = serde_json::from_str(&stdout(&crossrank_with(
        &["rerank", "--query", query, "--json"],
        Some(&input),
        &[],
    )))
    .unwrap();
    let results = out["results"].as_array().unwrap();
    assert_eq!(results.len(), same.len());
    let mut want: Vec<(usize, f64)> = same
        .iter()
        .enumerate()
        .map(|(i, r)| (i, r["score"].as_f64().unwrap()))
        .collect();
    want.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (res, (idx, score)) in results.iter().zip(&want) {
        assert_eq!(res["index"].as_u64().unwrap() as usize, *idx);
        assert!((res["score"].as_f64().unwrap() - score).abs() <= 1e-5);
        assert_eq!(res["text"], same[*idx]["passage"]);
    }
}

#[test]
fn rerank_plain_lines_from_file_with_top_n() {
    let docs = repo().join("examples/docs.txt");
    let out: Value = serde_json::from_str(&stdout(&crossrank_with(
        &[
            "rerank",
            "-q",
            "where is the largest coral reef?",
            "-i",
            docs.to_str().unwrap(),
            "--top-n",
            "2",
            "--json",
        ],
        None,
        &[],
    )))
    .unwrap();
    let results = out["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert!(results[0]["text"]
        .as_str()
        .unwrap()
        .contains("Great Barrier Reef"));
    assert!(results[0]["score"].as_f64().unwrap() > results[1]["score"].as_f64().unwrap());
    // Human output: a header and one line per document.
    let text = stdout(&crossrank_with(
        &["rerank", "-q", "coral reef", "-i", docs.to_str().unwrap()],
        None,
        &[],
    ));
    assert_eq!(text.lines().count(), 1 + 8);
    assert!(text.lines().nth(1).unwrap().contains("Great Barrier Reef"));
}

#[test]
fn models_lists_default_and_given() {
    let tiny = shared().join("fixtures/tiny-xlmr");
    let out: Value = serde_json::from_str(&stdout(&crossrank_with(
        &["models", "--json", "-m", tiny.to_str().unwrap()],
        None,
        &[],
    )))
    .unwrap();
    let models = out["models"].as_array().unwrap();
    assert_eq!(models[0]["source"], "default");
    assert_eq!(models[0]["architecture"], "Bert");
    assert_eq!(models[0]["layers"], 6);
    let given = models.iter().find(|m| m["source"] == "given").unwrap();
    assert_eq!(given["architecture"], "XlmRoberta");
    assert_eq!(given["max_length"], 512);
}

#[test]
fn device_flags_on_a_host_without_a_gpu() {
    if let Ok(g) = crossrank_engine::backend::cuda::probe(0) {
        eprintln!("SKIPPED: this host has a GPU ({})", g.name);
        return;
    }
    let rows = jsonl(&shared().join("fixtures/minilm-l6-rerank.pairs.jsonl"));
    let dir = temp_dir("device");
    let file = pairs_file(&dir, &rows[..4]);
    let f = file.to_str().unwrap();
    // An explicit GPU that is not there: exit 1 at once, saying what is missing.
    let e = fails(&["score", "--pairs", f, "--device", "cuda"], None);
    assert!(e.contains("--device cuda:0: no CUDA driver"), "{e}");
    let e = fails(
        &["score", "--pairs", f, "--dtype", "f16", "--device", "cpu"],
        None,
    );
    assert!(e.contains("--dtype f16 runs on a GPU only"), "{e}");
    // auto: the CPU's scores, and a line on stderr saying why.
    let plain = stdout(&crossrank_with(&["score", "--pairs", f], None, &[]));
    let ran = crossrank_with(&["score", "--pairs", f, "--device", "auto"], None, &[]);
    assert_eq!(stdout(&ran), plain);
    let err = String::from_utf8_lossy(&ran.1.stderr).to_string();
    assert!(err.contains("device auto: cpu (no CUDA driver"), "{err}");
    // A device name that is not one: a usage error (exit 2) listing the choices.
    let e = crossrank()
        .args(["score", "--pairs", f, "--device", "tpu"])
        .fails(2);
    assert!(e.contains("cpu, cuda, cuda:N or auto"), "{e}");
    // `models` says there is no GPU, and where each model runs.
    let out: Value =
        serde_json::from_str(&stdout(&crossrank_with(&["models", "--json"], None, &[]))).unwrap();
    assert_eq!(out["gpu"]["device"], Value::Null);
    assert!(
        out["gpu"]["why"]
            .as_str()
            .unwrap()
            .contains("no CUDA driver"),
        "{}",
        out["gpu"]
    );
    assert_eq!(out["models"][0]["device"], "cpu");
    assert_eq!(out["models"][0]["dtype"], "f32");
}

#[test]
fn bad_inputs_fail_with_messages_naming_the_problem() {
    let dir = temp_dir("errors");
    let ok = dir.join("ok.jsonl");
    std::fs::write(&ok, "{\"query\": \"q\", \"passage\": \"p\"}\n").unwrap();
    let okp = ok.to_str().unwrap();

    let err = fails(&["score", "--pairs", "/no/such/file.jsonl"], None);
    assert!(
        err.contains("/no/such/file.jsonl") && err.contains("No such file"),
        "{err}"
    );

    let bad = dir.join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"query\": \"q\", \"passage\": \"p\"}\n{\"query\": oops}\n",
    )
    .unwrap();
    let err = fails(&["score", "--pairs", bad.to_str().unwrap()], None);
    assert!(
        err.contains("bad.jsonl:2") && err.contains("invalid JSON"),
        "{err}"
    );

    std::fs::write(
        &bad,
        "{\"query\": \"q\", \"passage\": \"p\"}\n\n{\"query\": \"q\"}\n",
    )
    .unwrap();
    let err = fails(&["score", "--pairs", bad.to_str().unwrap()], None);
    assert!(
        err.contains("bad.jsonl:3") && err.contains("missing field \"passage\""),
        "{err}"
    );

    std::fs::write(&bad, "{\"query\": 5, \"passage\": \"p\"}\n").unwrap();
    let err = fails(&["score", "--pairs", bad.to_str().unwrap()], None);
    assert!(
        err.contains("bad.jsonl:1") && err.contains("\"query\" must be a string"),
        "{err}"
    );

    let err = fails(&["rerank", "-q", "x"], Some("{\"title\": \"no text\"}\n"));
    assert!(
        err.contains("<stdin>:1") && err.contains("missing field \"text\""),
        "{err}"
    );

    // Model directories broken in each way.
    let tiny = shared().join("fixtures/tiny-bert-1label");
    let model = |tag: &str| {
        let d = dir.join(tag);
        std::fs::create_dir_all(&d).unwrap();
        for f in ["config.json", "tokenizer.json", "model.safetensors"] {
            std::fs::copy(tiny.join(f), d.join(f)).unwrap();
        }
        d
    };
    let run = |d: &Path| {
        fails(
            &["score", "--model", d.to_str().unwrap(), "--pairs", okp],
            None,
        )
    };

    let d = model("arch");
    let cfg = std::fs::read_to_string(d.join("config.json"))
        .unwrap()
        .replace(
            "BertForSequenceClassification",
            "T5ForConditionalGeneration",
        )
        .replace("\"bert\"", "\"t5\"");
    std::fs::write(d.join("config.json"), cfg).unwrap();
    let err = run(&d);
    assert!(
        err.contains("T5ForConditionalGeneration")
            && err.contains("model_type")
            && err.contains("t5"),
        "{err}"
    );

    let d = model("notok");
    std::fs::remove_file(d.join("tokenizer.json")).unwrap();
    let err = run(&d);
    assert!(err.contains("tokenizer.json"), "{err}");

    let d = model("truncated");
    let bytes = std::fs::read(d.join("model.safetensors")).unwrap();
    std::fs::write(d.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let err = run(&d);
    assert!(
        err.contains("model.safetensors") && err.contains("invalid safetensors"),
        "{err}"
    );

    let d = model("corrupt");
    std::fs::write(
        d.join("model.safetensors"),
        b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}",
    )
    .unwrap();
    let err = run(&d);
    assert!(
        err.contains("model.safetensors") && err.contains("invalid safetensors"),
        "{err}"
    );

    let d = model("shape");
    let cfg = std::fs::read_to_string(d.join("config.json"))
        .unwrap()
        .replace("\"intermediate_size\": 64", "\"intermediate_size\": 48");
    std::fs::write(d.join("config.json"), cfg).unwrap();
    let err = run(&d);
    assert!(
        err.contains("intermediate.dense.weight")
            && err.contains("[48, 32]")
            && err.contains("[64, 32]"),
        "{err}"
    );

    let d = model("noweights");
    std::fs::remove_file(d.join("model.safetensors")).unwrap();
    let err = run(&d);
    assert!(err.contains("model.safetensors"), "{err}");

    let err = fails(
        &["score", "--model", "some-org/not-cached", "--pairs", okp],
        None,
    );
    assert!(
        err.contains("models--some-org--not-cached") && err.contains("--model DIR"),
        "{err}"
    );

    let err = fails(&["score", "--max-length", "100000", "--pairs", okp], None);
    assert!(err.contains("max_length 100000"), "{err}");

    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn score_new_architectures_with_per_line_instructions() {
    let dir = temp_dir("rerankers");
    for name in [
        "tiny-qwen3-reranker",
        "tiny-mxbai-v2",
        "tiny-ettin",
        "tiny-modernbert-mean",
    ] {
        let model = shared().join("fixtures").join(name);
        let rows = jsonl(&model.join("reference.jsonl"));
        // Every line carries its own instruction (or none), mixed in one file.
        let p = dir.join(format!("{name}.jsonl"));
        let text: String = rows
            .iter()
            .map(|r| {
                let mut o = serde_json::json!({"query": r["query"], "passage": r["passage"]});
                if let Some(i) = r.get("instruction") {
                    o["instruction"] = i.clone();
                }
                o.to_string() + "\n"
            })
            .collect();
        std::fs::write(&p, text).unwrap();
        let out = stdout(&crossrank_with(
            &[
                "score",
                "--model",
                model.to_str().unwrap(),
                "--pairs",
                p.to_str().unwrap(),
            ],
            None,
            &[],
        ));
        let got = score_lines(&out);
        assert_eq!(got.len(), rows.len(), "{name}");
        for (i, (g, r)) in got.iter().zip(&rows).enumerate() {
            let d = (g["logit"].as_f64().unwrap() - r["logit"].as_f64().unwrap()).abs();
            assert!(d <= 1e-4, "{name} line {}: logit off by {d}", i + 1);
        }
    }
    // `crossrank models` names the template and the answer tokens.
    let model = shared().join("fixtures/tiny-mxbai-v2");
    let out = stdout(&crossrank_with(
        &["models", "-m", model.to_str().unwrap(), "--json"],
        None,
        &[],
    ));
    let v: Value = serde_json::from_str(&out).unwrap();
    let row = v["models"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(row["template"], "mxbai-rerank-v2", "{row}");
    assert_eq!(row["answer_tokens"], serde_json::json!(["1", "0"]), "{row}");
    // A template that does not fit the architecture is refused.
    let bert = shared().join("fixtures/tiny-bert-1label");
    let err = fails(
        &[
            "rerank",
            "--model",
            bert.to_str().unwrap(),
            "--template",
            "qwen3-reranker",
            "--query",
            "q",
        ],
        Some("a\nb\n"),
    );
    assert!(err.contains("template"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

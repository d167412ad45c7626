//! Parity with the reference implementation (PyTorch + transformers + sentence-transformers,
//! fp32 CPU), using the fixtures in ../shared/fixtures. Never compares with our own output.

use crossrank_engine::{CrossEncoder, CrossEncoderOptions};
use crossrank_testkit::{jsonl as rows, shared};
use serde_json::Value;
use std::path::Path;

fn pairs(rows: &[Value]) -> Vec<(String, String)> {
    rows.iter()
        .map(|r| {
            (
                r["query"].as_str().unwrap().to_string(),
                r["passage"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn u32s(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn load(dir: &Path) -> CrossEncoder {
    CrossEncoder::load(dir, CrossEncoderOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// Returns the max |ours - reference| over all logits.
fn max_logit_diff(model: &CrossEncoder, rows: &[Value]) -> f32 {
    let preds = model.predict(&pairs(rows)).unwrap();
    assert_eq!(preds.len(), rows.len());
    let mut worst = 0.0f32;
    for (i, (p, r)) in preds.iter().zip(rows).enumerate() {
        let want: Vec<f32> = match r.get("logits") {
            Some(l) => l
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect(),
            None => vec![r["logit"].as_f64().unwrap() as f32],
        };
        assert_eq!(p.logits.len(), want.len(), "row {i}");
        for (a, b) in p.logits.iter().zip(&want) {
            worst = worst.max((a - b).abs());
        }
        let score = r["score"].as_f64().unwrap() as f32;
        assert!(
            (p.score - score).abs() <= 1e-5,
            "row {i}: score {} vs reference {score}",
            p.score
        );
    }
    worst
}

#[test]
fn minilm_token_ids_match_reference() {
    let rows = rows(&shared().join("fixtures/minilm-l6-rerank.pairs.jsonl"));
    assert_eq!(rows.len(), 87);
    let model = load(&shared().join("models/minilm-l6-rerank"));
    let enc = model.tokenize(&pairs(&rows)).unwrap();
    for (i, (e, r)) in enc.iter().zip(&rows).enumerate() {
        assert_eq!(e.ids, u32s(&r["input_ids"]), "input_ids of row {i}");
        assert_eq!(
            e.type_ids,
            u32s(&r["token_type_ids"]),
            "token_type_ids of row {i}"
        );
    }
    // The long edge cases really are truncated to 512.
    assert_eq!(enc.iter().map(|e| e.ids.len()).max(), Some(512));
}

#[test]
fn minilm_logits_match_reference() {
    let rows = rows(&shared().join("fixtures/minilm-l6-rerank.pairs.jsonl"));
    let model = load(&shared().join("models/minilm-l6-rerank"));
    let worst = max_logit_diff(&model, &rows);
    eprintln!("minilm-l6-rerank: max |logit - reference| = {worst:e}");
    assert!(worst <= 1e-4, "max |logit - reference| = {worst}");
}

#[test]
fn minilm_logits_do_not_depend_on_batching() {
    // Reference parity must hold whatever the batch split (one pair per pass, small token budget).
    let rows = rows(&shared().join("fixtures/minilm-l6-rerank.pairs.jsonl"));
    let dir = shared().join("models/minilm-l6-rerank");
    let opts = CrossEncoderOptions {
        max_batch_pairs: Some(1),
        threads: Some(1),
        ..Default::default()
    };
    let model = CrossEncoder::load(&dir, opts).unwrap();
    let worst = max_logit_diff(&model, &rows[60..]);
    assert!(worst <= 1e-4, "max |logit - reference| = {worst}");
}

#[test]
fn tiny_bert_one_label_matches_reference() {
    let dir = shared().join("fixtures/tiny-bert-1label");
    let worst = max_logit_diff(&load(&dir), &rows(&dir.join("reference.jsonl")));
    eprintln!("tiny-bert-1label: max |logit - reference| = {worst:e}");
    assert!(worst <= 1e-4, "{worst}");
}

#[test]
fn tiny_bert_two_labels_match_reference() {
    let dir = shared().join("fixtures/tiny-bert-2label");
    let worst = max_logit_diff(&load(&dir), &rows(&dir.join("reference.jsonl")));
    eprintln!("tiny-bert-2label: max |logit - reference| = {worst:e}");
    assert!(worst <= 1e-4, "{worst}");
}

#[test]
fn tiny_xlmr_matches_reference() {
    let dir = shared().join("fixtures/tiny-xlmr");
    let rows = rows(&dir.join("reference.jsonl"));
    let model = load(&dir);
    let enc = model.tokenize(&pairs(&rows)).unwrap();
    for (i, (e, r)) in enc.iter().zip(&rows).enumerate() {
        assert_eq!(e.ids, u32s(&r["input_ids"]), "input_ids of row {i}");
    }
    let worst = max_logit_diff(&model, &rows);
    eprintln!("tiny-xlmr: max |logit - reference| = {worst:e}");
    assert!(worst <= 1e-4, "{worst}");
}

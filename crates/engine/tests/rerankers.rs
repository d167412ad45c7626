//! Parity of the 2025-2026 reranker architectures with the reference (torch 2.15 /
//! transformers 5.24 / sentence-transformers 6.2, fp32 CPU) on ../shared/fixtures: ModernBERT
//! (cls and mean pooling), Qwen3-Reranker (causal LM, answer tokens), its seq-cls conversion,
//! mxbai-rerank-v2 (Qwen2) and an Ettin-style sentence-transformers module chain. Token ids
//! must be identical; logits within 1e-4; the score from the model's own activation.

use crossrank_engine::{CrossEncoder, CrossEncoderOptions, Quantize, Template};
use crossrank_testkit::{jsonl, shared};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    shared().join("fixtures")
}

fn rows(name: &str) -> Vec<Value> {
    jsonl(&fixtures().join(name).join("reference.jsonl"))
}

fn load(name: &str, quantize: Quantize) -> CrossEncoder {
    let options = CrossEncoderOptions {
        quantize,
        threads: Some(2),
        ..Default::default()
    };
    CrossEncoder::load(&fixtures().join(name), options).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Checks ids, logits (batched, grouped by instruction) and scores; returns the max |logit
/// difference| and our logits in row order.
fn check(name: &str, score_is_logit: bool) -> (f64, Vec<f32>) {
    let m = load(name, Quantize::None);
    let rows = rows(name);
    let mut ours = vec![0.0f32; rows.len()];
    let mut worst = 0.0f64;
    // One predict call per distinct instruction, as the reference scored them.
    let mut groups: Vec<(Option<String>, Vec<usize>)> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let inst = r
            .get("instruction")
            .and_then(Value::as_str)
            .map(String::from);
        match groups.iter_mut().find(|(g, _)| *g == inst) {
            Some((_, v)) => v.push(i),
            None => groups.push((inst, vec![i])),
        }
    }
    for (inst, idx) in &groups {
        let pairs: Vec<(&str, &str)> = idx
            .iter()
            .map(|&i| {
                (
                    rows[i]["query"].as_str().unwrap(),
                    rows[i]["passage"].as_str().unwrap(),
                )
            })
            .collect();
        let enc = m.tokenize_with(&pairs, inst.as_deref()).unwrap();
        for (&i, e) in idx.iter().zip(&enc) {
            let want: Vec<u32> = rows[i]["input_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(e.ids, want, "{name} row {i}: token ids differ");
        }
        let preds = m.predict_encoded(&enc).unwrap();
        for (&i, p) in idx.iter().zip(&preds) {
            let logit = match p.logits.as_slice() {
                [l] => *l as f64,
                [a, b] => (*b - *a) as f64,
                other => panic!("{other:?}"),
            };
            let want = rows[i]["logit"].as_f64().unwrap();
            worst = worst.max((logit - want).abs());
            let want_score = rows[i]["score"].as_f64().unwrap();
            let expect = if score_is_logit {
                logit
            } else {
                sigmoid(logit)
            };
            assert!(
                (p.score as f64 - expect).abs() < 1e-6,
                "{name} row {i}: score {} is not the model's activation of {logit}",
                p.score
            );
            assert!(
                (p.score as f64 - want_score).abs() < 1e-4 * want_score.abs().max(1.0),
                "{name} row {i}: score {} vs reference {want_score}",
                p.score
            );
            ours[i] = logit as f32;
        }
        // Batched equals one at a time.
        for (k, &i) in idx.iter().enumerate().step_by(9) {
            let one = m.predict_encoded(&enc[k..k + 1]).unwrap();
            assert!(
                (one[0].logits[0] - preds[k].logits[0]).abs() <= 1e-5,
                "{name} row {i}: alone {:?}, batched {:?}",
                one[0].logits,
                preds[k].logits
            );
        }
    }
    eprintln!(
        "{name}: {} rows, max |logit - reference| = {worst:.2e}",
        rows.len()
    );
    assert!(worst <= 1e-4, "{name}: max |logit - reference| {worst}");
    (worst, ours)
}

#[test]
fn modernbert_mean_and_cls_match_the_reference() {
    check("tiny-modernbert-mean", false);
    check("tiny-modernbert-cls", false);
}

#[test]
fn qwen3_reranker_causal_lm_and_seq_cls_agree_with_the_reference_and_each_other() {
    let (_, lm) = check("tiny-qwen3-reranker", false);
    let (_, cls) = check("tiny-qwen3-seqcls", false);
    let worst = lm
        .iter()
        .zip(&cls)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= 1e-4, "causal LM vs seq-cls: {worst}");
    let m = load("tiny-qwen3-reranker", Quantize::None);
    assert_eq!(m.template(), Template::Qwen3Reranker);
}

#[test]
fn decoder_batches_share_their_prompt_prefix() {
    // The batched logits above (checked against the reference and against one pair at a
    // time) went through the shared-prefix path: the fixture batch really is split, every
    // pair sharing at least the 53-token system prompt and pairs of one query their query.
    use crossrank_engine::models::{encoder::PackedBatch, prefix};
    let m = load("tiny-qwen3-reranker", Quantize::None);
    let rows = rows("tiny-qwen3-reranker");
    let pairs: Vec<(&str, &str)> = rows
        .iter()
        .filter(|r| r.get("instruction").is_none())
        .map(|r| (r["query"].as_str().unwrap(), r["passage"].as_str().unwrap()))
        .collect();
    let enc = m.tokenize(&pairs).unwrap();
    let mut batch = PackedBatch::default();
    batch.offsets.push(0);
    for e in &enc {
        batch.ids.extend_from_slice(&e.ids);
        batch.positions.extend(0..e.ids.len() as u32);
        batch.offsets.push(batch.ids.len());
    }
    let split = prefix::split(&batch, prefix::MIN_SHARED).expect("the pairs share a prefix");
    assert!(split.ranges.iter().all(|r| r.1 >= 53), "{:?}", split.ranges);
    let queries = pairs
        .iter()
        .map(|p| p.0)
        .collect::<std::collections::HashSet<_>>();
    assert!(
        split.prefixes.sequences() < queries.len() + 1,
        "{} prefixes for {} queries",
        split.prefixes.sequences(),
        queries.len()
    );
    assert!(
        split.saved_tokens() >= (enc.len() - 1) * 53,
        "saved {} of {} tokens",
        split.saved_tokens(),
        batch.tokens()
    );
    eprintln!(
        "tiny-qwen3-reranker: {} pairs, {} tokens, {} run once in {} shared prefixes",
        enc.len(),
        batch.tokens(),
        split.saved_tokens(),
        split.prefixes.sequences()
    );
}

#[test]
fn mxbai_rerank_v2_matches_the_reference() {
    check("tiny-mxbai-v2", false);
    let m = load("tiny-mxbai-v2", Quantize::None);
    assert_eq!(m.template(), Template::MxbaiRerankV2);
}

#[test]
fn ettin_module_chain_matches_the_reference_with_identity_scores() {
    check("tiny-ettin", true);
}

#[test]
fn a_long_body_is_cut_and_the_suffix_kept() {
    let m = load("tiny-qwen3-reranker", Quantize::None);
    let long = "word ".repeat(3000);
    let enc = m.tokenize(&[("a query", long.as_str())]).unwrap();
    assert_eq!(enc[0].ids.len(), 512);
    let suffix = m
        .tokenizer()
        .plain_ids("<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n")
        .unwrap();
    assert!(enc[0].ids.ends_with(&suffix), "the suffix was cut");
    assert_eq!(enc[0].ids[0], 3001, "the prefix starts with <|im_start|>");
    assert!(m.untruncated_len("a query", &long, None).unwrap() > 3000);
}

#[test]
fn int8_keeps_the_ranking_of_every_new_architecture() {
    for name in [
        "tiny-modernbert-mean",
        "tiny-qwen3-reranker",
        "tiny-mxbai-v2",
        "tiny-ettin",
    ] {
        let rows = rows(name);
        let pairs: Vec<(&str, &str)> = rows
            .iter()
            .filter(|r| r.get("instruction").is_none())
            .map(|r| (r["query"].as_str().unwrap(), r["passage"].as_str().unwrap()))
            .collect();
        let f = load(name, Quantize::None).predict(&pairs).unwrap();
        let q = load(name, Quantize::Int8).predict(&pairs).unwrap();
        let a: Vec<f64> = f.iter().map(|p| p.score as f64).collect();
        let b: Vec<f64> = q.iter().map(|p| p.score as f64).collect();
        let rho = spearman(&a, &b);
        eprintln!(
            "{name}: int8 vs fp32 Spearman {rho:.4} over {} pairs",
            a.len()
        );
        assert!(rho > 0.99, "{name}: int8 Spearman {rho}");
    }
}

fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let rank = |v: &[f64]| {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
        let mut r = vec![0.0; v.len()];
        for (k, &i) in idx.iter().enumerate() {
            r[i] = k as f64;
        }
        r
    };
    let (ra, rb) = (rank(a), rank(b));
    let n = a.len() as f64;
    let d2: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - y).powi(2)).sum();
    1.0 - 6.0 * d2 / (n * (n * n - 1.0))
}

#[test]
fn loading_errors_name_the_problem() {
    // A causal LM without a known prompt names the option.
    let src = fixtures().join("tiny-qwen3-reranker");
    let dir = std::env::temp_dir().join(format!("crossrank-no-template-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let err = CrossEncoder::load(&dir, CrossEncoderOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("--template"), "{err}");
    // With the option it loads and scores like the original.
    let m = CrossEncoder::load(
        &dir,
        CrossEncoderOptions {
            template: Some(Template::Qwen3Reranker),
            ..Default::default()
        },
    )
    .unwrap();
    let r = &rows("tiny-qwen3-reranker")[0];
    let p = m
        .predict(&[(r["query"].as_str().unwrap(), r["passage"].as_str().unwrap())])
        .unwrap();
    assert!((p[0].logits[0] as f64 - r["logit"].as_f64().unwrap()).abs() < 1e-4);
    // An unknown module class in modules.json is named.
    let src = fixtures().join("tiny-ettin");
    let e = std::env::temp_dir().join(format!("crossrank-bad-module-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&e);
    copy_dir(&src, &e);
    let modules = std::fs::read_to_string(e.join("modules.json"))
        .unwrap()
        .replace("layer_norm.LayerNorm", "fancy.WeirdNorm");
    std::fs::write(e.join("modules.json"), modules).unwrap();
    let err = CrossEncoder::load(&e, CrossEncoderOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("WeirdNorm"), "{err}");
    // A missing tensor is named with its expected shape.
    let e2 = std::env::temp_dir().join(format!("crossrank-bad-tensor-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&e2);
    copy_dir(&src, &e2);
    std::fs::copy(
        e2.join("3_LayerNorm/model.safetensors"),
        e2.join("4_Dense/model.safetensors"),
    )
    .unwrap();
    let err = CrossEncoder::load(&e2, CrossEncoderOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("linear.weight") && err.contains("[1, 64]"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&e);
    let _ = std::fs::remove_dir_all(&e2);
    let _ = std::fs::remove_dir_all(&dir);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let p = entry.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

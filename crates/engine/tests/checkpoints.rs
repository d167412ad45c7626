//! The same checkpoint stored as f16, f32, bf16 or in shards loads to the same model.

use crossrank_engine::{CrossEncoder, CrossEncoderOptions};
use crossrank_testkit::{shared, temp_dir};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::Path;

/// All tensors of a safetensors file as (name, f32 values, shape).
fn read_f32(path: &Path) -> Vec<(String, Vec<f32>, Vec<usize>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(name, v)| {
            let vals: Vec<f32> = match v.dtype() {
                Dtype::F16 => v
                    .data()
                    .chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                Dtype::F32 => v
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                d => panic!("unexpected {d:?}"),
            };
            (name, vals, v.shape().to_vec())
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn encode(vals: &[f32], dtype: Dtype) -> Vec<u8> {
    match dtype {
        Dtype::F32 => vals.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Dtype::F16 => vals
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect(),
        Dtype::BF16 => vals
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
            .collect(),
        _ => unreachable!(),
    }
}

fn write(path: &Path, tensors: &[(String, Vec<f32>, Vec<usize>)], dtype: Dtype) {
    let bufs: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(n, v, s)| (n.clone(), encode(v, dtype), s.clone()))
        .collect();
    let views: Vec<(String, TensorView)> = bufs
        .iter()
        .map(|(n, b, s)| (n.clone(), TensorView::new(dtype, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, &None, path).unwrap();
}

fn copy_configs(from: &Path, to: &Path) {
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
}

fn logits(dir: &Path, pairs: &[(String, String)]) -> Vec<Vec<f32>> {
    let m =
        CrossEncoder::load(dir, CrossEncoderOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    m.predict(pairs)
        .unwrap()
        .into_iter()
        .map(|p| p.logits)
        .collect()
}

fn sample_pairs() -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(shared().join("fixtures/minilm-l6-rerank.pairs.jsonl")).unwrap();
    text.lines()
        .step_by(7)
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["query"].as_str().unwrap().into(),
                v["passage"].as_str().unwrap().into(),
            )
        })
        .collect()
}

#[test]
fn f16_f32_and_sharded_copies_give_identical_logits() {
    let src = shared().join("models/minilm-l6-rerank");
    let tensors = read_f32(&src.join("model.safetensors"));
    let pairs = sample_pairs();
    let original = logits(&src, &pairs);

    let f32_dir = temp_dir("f32");
    copy_configs(&src, &f32_dir);
    write(&f32_dir.join("model.safetensors"), &tensors, Dtype::F32);
    assert_eq!(logits(&f32_dir, &pairs), original, "f32 copy");

    let sharded = temp_dir("sharded");
    copy_configs(&src, &sharded);
    let half = tensors.len() / 2;
    let mut map = HashMap::new();
    for (i, part) in [&tensors[..half], &tensors[half..]].iter().enumerate() {
        let name = format!("model-{:05}-of-00002.safetensors", i + 1);
        write(&sharded.join(&name), part, Dtype::F32);
        for t in part.iter() {
            map.insert(t.0.clone(), name.clone());
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(
        sharded.join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    assert_eq!(logits(&sharded, &pairs), original, "sharded f32 copy");

    let _ = std::fs::remove_dir_all(&f32_dir);
    let _ = std::fs::remove_dir_all(&sharded);
}

#[test]
fn bf16_copy_loads_and_stays_close() {
    // bf16 keeps 8 bits of mantissa, so logits move a little; the ranking signal must survive.
    let src = shared().join("models/minilm-l6-rerank");
    let tensors = read_f32(&src.join("model.safetensors"));
    let pairs = sample_pairs();
    let original = logits(&src, &pairs);
    let dir = temp_dir("bf16");
    copy_configs(&src, &dir);
    write(&dir.join("model.safetensors"), &tensors, Dtype::BF16);
    let got = logits(&dir, &pairs);
    let worst = got
        .iter()
        .zip(&original)
        .map(|(a, b)| (a[0] - b[0]).abs())
        .fold(0.0f32, f32::max);
    assert!(worst > 0.0 && worst < 0.5, "bf16 max |logit diff| {worst}");
    let _ = std::fs::remove_dir_all(&dir);
}

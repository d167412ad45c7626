//! Inputs that used to panic inside the engine: a BERT checkpoint with one token type fed a
//! pair (the tokenizer gives the second segment type 1), and a bi-encoder whose tokenizer
//! yields no tokens for an empty text.

use crossrank_engine::{BiEncoder, CrossEncoder, CrossEncoderOptions};
use crossrank_testkit::{shared, temp_dir};
use safetensors::tensor::TensorView;
use safetensors::SafeTensors;
use std::path::PathBuf;

/// tiny-bert-1label with `type_vocab_size: 1` and only row 0 of the token-type table.
fn one_type_copy() -> PathBuf {
    let src = shared().join("fixtures/tiny-bert-1label");
    let dir = temp_dir("one-type");
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    cfg["type_vocab_size"] = 1.into();
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, v) in st.tensors() {
        let mut shape = v.shape().to_vec();
        let mut data = v.data().to_vec();
        if name.ends_with("token_type_embeddings.weight") {
            data.truncate(data.len() / shape[0]);
            shape[0] = 1;
        }
        owned.push((name, v.dtype(), shape, data));
    }
    let views: Vec<(String, TensorView)> = owned
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, &None, &dir.join("model.safetensors")).unwrap();
    dir
}

#[test]
fn one_token_type_checkpoint_scores_pairs_as_type_zero() {
    let dir = one_type_copy();
    let m = CrossEncoder::load(&dir, CrossEncoderOptions::default()).unwrap();
    let pairs = [("what is rust", "Rust is a systems programming language.")];
    let enc = m.tokenize(&pairs).unwrap();
    assert!(
        enc[0].type_ids.contains(&1),
        "the tokenizer gives the passage type 1, which this checkpoint has no row for"
    );
    // Before the fix this indexed past the one-row table and panicked.
    let got = m.predict_encoded(&enc).unwrap();
    let mut zeroed = enc.clone();
    zeroed[0].type_ids.iter_mut().for_each(|t| *t = 0);
    let want = m.predict_encoded(&zeroed).unwrap();
    assert_eq!(got[0].logits, want[0].logits);
    assert!(got[0].score.is_finite());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bi_encoder_text_without_tokens_is_an_error_not_a_panic() {
    let src = shared().join("fixtures/tiny-bert-1label");
    let dir = temp_dir("no-post-processor");
    for f in ["config.json", "model.safetensors", "tokenizer_config.json"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let mut tok: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("tokenizer.json")).unwrap())
            .unwrap();
    tok["post_processor"] = serde_json::Value::Null;
    std::fs::write(dir.join("tokenizer.json"), tok.to_string()).unwrap();
    std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
    std::fs::write(
        dir.join("1_Pooling/config.json"),
        r#"{"word_embedding_dimension": 32, "pooling_mode_cls_token": true}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("modules.json"),
        r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
            {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"}]"#,
    )
    .unwrap();
    let b = BiEncoder::load(&dir, Some(1)).unwrap();
    // A text with tokens still embeds.
    assert_eq!(b.embed(&["hello world"]).unwrap()[0].len(), 32);
    let err = b.embed(&["hello", ""]).unwrap_err().to_string();
    assert!(err.contains("text 1") && err.contains("0 tokens"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

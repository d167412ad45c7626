//! A BERT-style encoder's tensors as the checkpoint stores them, read once and handed to a
//! backend (the CPU packs them into GEMM panels, the CUDA backend uploads them).

use crate::config::{Activation, ModelConfig};
use crate::error::Result;
use crate::weights::Weights;

/// One layer's tensors as the checkpoint stores them (row-major `[out x in]` weights).
pub struct LayerTensors {
    /// Q, K and V weights stacked: `[3h x h]`.
    pub qkv_w: Vec<f32>,
    /// Q, K and V biases: `[3h]`.
    pub qkv_b: Vec<f32>,
    /// Attention output projection `[h x h]` and bias.
    pub attn_out: (Vec<f32>, Vec<f32>),
    /// LayerNorm after attention (gamma, beta).
    pub ln1: (Vec<f32>, Vec<f32>),
    /// Feed-forward input `[i x h]` and bias.
    pub ffn_in: (Vec<f32>, Vec<f32>),
    /// Feed-forward output `[h x i]` and bias.
    pub ffn_out: (Vec<f32>, Vec<f32>),
    /// LayerNorm after the feed-forward block (gamma, beta).
    pub ln2: (Vec<f32>, Vec<f32>),
}

/// A BERT-style encoder's tensors in fp32, read once from the checkpoint and shared by every
/// backend (the CPU packs them into panels, the CUDA backend uploads them).
pub struct EncoderTensors {
    /// Hidden width.
    pub hidden: usize,
    /// Attention heads.
    pub heads: usize,
    /// Feed-forward width.
    pub inter: usize,
    /// LayerNorm epsilon.
    pub eps: f32,
    /// Feed-forward activation.
    pub activation: Activation,
    /// Word embeddings `[vocab x h]`.
    pub word: Vec<f32>,
    /// Position embeddings `[positions x h]`.
    pub position: Vec<f32>,
    /// Token-type embeddings `[types x h]`.
    pub token_type: Vec<f32>,
    /// Embedding LayerNorm (gamma, beta).
    pub emb_ln: (Vec<f32>, Vec<f32>),
    /// The transformer layers.
    pub layers: Vec<LayerTensors>,
}

impl EncoderTensors {
    /// Reads the encoder's tensors, trying each name prefix in turn.
    pub fn load(cfg: &ModelConfig, w: &Weights, prefixes: &[&str]) -> Result<Self> {
        let h = cfg.hidden_size;
        let i = cfg.intermediate_size;
        let get = |name: &str, shape: &[usize]| w.get_prefixed(prefixes, name, shape);
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for l in 0..cfg.num_layers {
            let p = format!("encoder.layer.{l}.");
            let mut qkv_w = get(&format!("{p}attention.self.query.weight"), &[h, h])?;
            qkv_w.extend(get(&format!("{p}attention.self.key.weight"), &[h, h])?);
            qkv_w.extend(get(&format!("{p}attention.self.value.weight"), &[h, h])?);
            let mut qkv_b = get(&format!("{p}attention.self.query.bias"), &[h])?;
            qkv_b.extend(get(&format!("{p}attention.self.key.bias"), &[h])?);
            qkv_b.extend(get(&format!("{p}attention.self.value.bias"), &[h])?);
            let linear = |name: &str, n: usize, k: usize| -> Result<(Vec<f32>, Vec<f32>)> {
                Ok((
                    get(&format!("{p}{name}.weight"), &[n, k])?,
                    get(&format!("{p}{name}.bias"), &[n])?,
                ))
            };
            let norm = |name: &str| -> Result<(Vec<f32>, Vec<f32>)> {
                Ok((
                    get(&format!("{p}{name}.LayerNorm.weight"), &[h])?,
                    get(&format!("{p}{name}.LayerNorm.bias"), &[h])?,
                ))
            };
            layers.push(LayerTensors {
                qkv_w,
                qkv_b,
                attn_out: linear("attention.output.dense", h, h)?,
                ln1: norm("attention.output")?,
                ffn_in: linear("intermediate.dense", i, h)?,
                ffn_out: linear("output.dense", h, i)?,
                ln2: norm("output")?,
            });
        }
        Ok(EncoderTensors {
            hidden: h,
            heads: cfg.num_heads,
            inter: i,
            eps: cfg.layer_norm_eps,
            activation: cfg.activation,
            word: get("embeddings.word_embeddings.weight", &[cfg.vocab_size, h])?,
            position: get(
                "embeddings.position_embeddings.weight",
                &[cfg.max_position_embeddings, h],
            )?,
            token_type: get(
                "embeddings.token_type_embeddings.weight",
                &[cfg.type_vocab_size, h],
            )?,
            emb_ln: (
                get("embeddings.LayerNorm.weight", &[h])?,
                get("embeddings.LayerNorm.bias", &[h])?,
            ),
            layers,
        })
    }
}

/// Nominal FLOPs of a BERT-style encoder on a sequence of `len` tokens: every layer on every
/// token (linear layers plus attention's QK^T and PV).
pub(crate) fn encoder_flops(hidden: usize, inter: usize, layers: usize, len: usize) -> f64 {
    let (h, i, l, n) = (hidden as f64, inter as f64, layers as f64, len as f64);
    l * (n * 2.0 * (4.0 * h * h + 2.0 * h * i) + 4.0 * n * n * h)
}

//! The transformer encoder shared by BERT and XLM-RoBERTa, run on packed tokens.
//!
//! All tokens of all sequences of a batch form one `[tokens x hidden]` matrix, so every linear
//! layer is one GEMM with no padding; attention runs per (sequence, head) on that sequence's
//! rows only.

use super::blocks::{attention, Heads, Mask};
use super::linear::Linear;
use super::tensors::encoder_flops;
pub use super::tensors::{EncoderTensors, LayerTensors};
use crate::config::{Activation, ModelConfig};
use crate::error::Result;
use crate::kernels::gemm::Epilogue;
use crate::kernels::ops;
use crate::kernels::qgemm::QuantizedRows;
use crate::weights::Weights;
use rayon::prelude::*;

/// Token-level inputs of a batch: sequences laid end to end.
#[derive(Debug, Default, Clone)]
pub struct PackedBatch {
    /// Token ids.
    pub ids: Vec<u32>,
    /// Token type (segment) ids.
    pub type_ids: Vec<u32>,
    /// Position ids.
    pub positions: Vec<u32>,
    /// Start of each sequence, plus the total at the end (`len = sequences + 1`).
    pub offsets: Vec<usize>,
}

impl PackedBatch {
    /// Number of sequences.
    pub fn sequences(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }
    /// Number of tokens.
    pub fn tokens(&self) -> usize {
        self.ids.len()
    }
    /// Appends tokens `range` of `from` (ids, positions, and types where `from` has them) as
    /// one more sequence.
    pub fn push_tokens_of(&mut self, from: &PackedBatch, range: std::ops::Range<usize>) {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        self.ids.extend_from_slice(&from.ids[range.clone()]);
        self.positions
            .extend_from_slice(&from.positions[range.clone()]);
        if from.type_ids.len() == from.ids.len() {
            self.type_ids.extend_from_slice(&from.type_ids[range]);
        }
        self.offsets.push(self.ids.len());
    }

    /// Empties the batch, keeping its buffers.
    pub fn clear(&mut self) {
        self.ids.clear();
        self.type_ids.clear();
        self.positions.clear();
        self.offsets.clear();
    }
}

/// Numeric precision of the linear layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Quantize {
    /// fp32 weights and activations (reference scores).
    #[default]
    None,
    /// int8 weights per output channel, int8 activations per token, i32 accumulation.
    Int8,
}

impl Quantize {
    /// The name on the wire and on the command line ("none", "int8").
    pub fn name(self) -> &'static str {
        match self {
            Quantize::None => "none",
            Quantize::Int8 => "int8",
        }
    }
}

struct Layer {
    qkv: Linear,
    /// Q and [K|V] as separate products, kept for the last layer, where only the first token
    /// of each sequence needs a query (see [`Encoder::forward_first_tokens`]).
    split_qkv: Option<(Linear, Linear)>,
    attn_out: Linear,
    ln1_gamma: Vec<f32>,
    ln1_beta: Vec<f32>,
    ffn_in: Linear,
    ffn_out: Linear,
    ln2_gamma: Vec<f32>,
    ln2_beta: Vec<f32>,
}

/// Embeddings plus transformer layers.
pub struct Encoder {
    hidden: usize,
    heads: usize,
    inter: usize,
    eps: f32,
    activation: Activation,
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    emb_gamma: Vec<f32>,
    emb_beta: Vec<f32>,
    layers: Vec<Layer>,
}

/// Reusable activation buffers.
#[derive(Default)]
pub struct Workspace {
    /// Hidden states `[tokens x hidden]` after [`Encoder::forward`].
    pub x: Vec<f32>,
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    inter: Vec<f32>,
    quantized: QuantizedRows,
    /// First-token hidden states `[sequences x hidden]` after [`Encoder::forward_first_tokens`].
    pub first: Vec<f32>,
    first_q: Vec<f32>,
    first_ctx: Vec<f32>,
    /// Buffers of the ModernBERT path.
    pub(crate) modern: super::modernbert::ModernBertWorkspace,
    /// Buffers of the decoder path.
    pub(crate) decoder: super::qwen::QwenWorkspace,
}

impl Encoder {
    /// Loads the encoder's tensors, trying each name prefix in turn.
    pub fn load(
        cfg: &ModelConfig,
        w: &Weights,
        prefixes: &[&str],
        quantize: Quantize,
    ) -> Result<Self> {
        Ok(Encoder::new(
            EncoderTensors::load(cfg, w, prefixes)?,
            quantize,
        ))
    }

    /// Packs read tensors for the CPU kernels.
    pub fn new(t: EncoderTensors, quantize: Quantize) -> Self {
        let h = t.hidden;
        let n_layers = t.layers.len();
        let layers = t
            .layers
            .into_iter()
            .enumerate()
            .map(|(l, lt)| {
                let linear = |(w, b): (Vec<f32>, Vec<f32>), n: usize, k: usize| {
                    Linear::new(&w, n, k, b, quantize)
                };
                let split_qkv = (l + 1 == n_layers).then(|| {
                    let q = Linear::new(&lt.qkv_w[..h * h], h, h, lt.qkv_b[..h].to_vec(), quantize);
                    let kv = Linear::new(
                        &lt.qkv_w[h * h..],
                        2 * h,
                        h,
                        lt.qkv_b[h..].to_vec(),
                        quantize,
                    );
                    (q, kv)
                });
                Layer {
                    split_qkv,
                    qkv: Linear::new(&lt.qkv_w, 3 * h, h, lt.qkv_b, quantize),
                    attn_out: linear(lt.attn_out, h, h),
                    ln1_gamma: lt.ln1.0,
                    ln1_beta: lt.ln1.1,
                    ffn_in: linear(lt.ffn_in, t.inter, h),
                    ffn_out: linear(lt.ffn_out, h, t.inter),
                    ln2_gamma: lt.ln2.0,
                    ln2_beta: lt.ln2.1,
                }
            })
            .collect();
        Encoder {
            hidden: h,
            heads: t.heads,
            inter: t.inter,
            eps: t.eps,
            activation: t.activation,
            word: t.word,
            position: t.position,
            token_type: t.token_type,
            emb_gamma: t.emb_ln.0,
            emb_beta: t.emb_ln.1,
            layers,
        }
    }

    /// Hidden width.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// The model's nominal FLOPs for a sequence of `len` tokens: every layer on every token
    /// (linear layers plus attention's QK^T and PV), the usual way to state a workload's cost.
    pub fn model_flops(&self, len: usize) -> f64 {
        encoder_flops(self.hidden, self.inter, self.layers.len(), len)
    }

    /// FLOPs [`Encoder::forward_first_tokens`] actually executes for a sequence of `len` tokens.
    pub fn first_token_flops(&self, len: usize) -> f64 {
        if self.layers.is_empty() {
            return 0.0;
        }
        let (h, i, n) = (self.hidden as f64, self.inter as f64, len as f64);
        let per_layer = self.model_flops(len) / self.layers.len() as f64;
        let last = n * 2.0 * 2.0 * h * h + 2.0 * (2.0 * h * h + 2.0 * h * i) + 4.0 * n * h;
        per_layer * (self.layers.len() - 1) as f64 + last
    }

    /// Runs the encoder; the final hidden states of all tokens are left in `ws.x`. Ids must be
    /// in range (the caller checks them against the vocabulary).
    pub fn forward(&self, batch: &PackedBatch, ws: &mut Workspace) {
        self.embed(batch, ws);
        for layer in &self.layers {
            self.layer(layer, batch, ws);
        }
    }

    /// Runs the encoder for a classifier that reads only each sequence's first token: the last
    /// layer computes keys and values for every token but queries, attention output and
    /// feed-forward only for first tokens (exactly the same result for those rows, about 14%
    /// fewer FLOPs for six layers). The states are left in `ws.first` (`[sequences x hidden]`).
    pub fn forward_first_tokens(&self, batch: &PackedBatch, ws: &mut Workspace) {
        self.embed(batch, ws);
        let Some((last, rest)) = self.layers.split_last() else {
            let h = self.hidden;
            ws.first.clear();
            for s in 0..batch.sequences() {
                ws.first
                    .extend_from_slice(&ws.x[batch.offsets[s] * h..][..h]);
            }
            return;
        };
        for layer in rest {
            self.layer(layer, batch, ws);
        }
        self.last_layer_first_tokens(last, batch, ws);
    }

    fn act(&self) -> Epilogue<'static> {
        match self.activation {
            Activation::Gelu => Epilogue::Gelu,
            Activation::GeluTanh => Epilogue::GeluTanh,
            Activation::Relu => Epilogue::Relu,
        }
    }

    fn embed(&self, batch: &PackedBatch, ws: &mut Workspace) {
        let t = batch.tokens();
        let h = self.hidden;
        ws.x.resize(t * h, 0.0);
        ws.qkv.resize(t * 3 * h, 0.0);
        ws.ctx.resize(t * h, 0.0);
        ws.inter.resize(t * self.inter, 0.0);
        // Embeddings + LayerNorm, by rows in parallel.
        ws.x.par_chunks_mut(h).enumerate().for_each(|(r, row)| {
            let w = &self.word[batch.ids[r] as usize * h..][..h];
            let p = &self.position[batch.positions[r] as usize * h..][..h];
            let ty = &self.token_type[batch.type_ids[r] as usize * h..][..h];
            for j in 0..h {
                row[j] = w[j] + p[j] + ty[j];
            }
            ops::layer_norm(row, &self.emb_gamma, &self.emb_beta, self.eps);
        });
    }

    fn layer(&self, layer: &Layer, batch: &PackedBatch, ws: &mut Workspace) {
        let t = batch.tokens();
        let h = self.hidden;
        let (ln1, ln2) = self.norms(layer);
        let q = &mut ws.quantized;
        layer
            .qkv
            .run(&ws.x, h, t, &mut ws.qkv, 3 * h, false, Epilogue::None, q);
        let heads = Heads {
            q_heads: self.heads,
            kv_heads: self.heads,
            d: h / self.heads,
            ld: 3 * h,
            q_col: 0,
            k_col: h,
            v_col: 2 * h,
        };
        // No mask: no token is padding.
        attention(
            &batch.offsets,
            &ws.qkv,
            heads,
            Mask::Full,
            None,
            &mut ws.ctx,
        );
        layer
            .attn_out
            .run(&ws.ctx, h, t, &mut ws.x, h, true, ln1, q);
        layer
            .ffn_in
            .run(&ws.x, h, t, &mut ws.inter, self.inter, false, self.act(), q);
        layer
            .ffn_out
            .run(&ws.inter, self.inter, t, &mut ws.x, h, true, ln2, q);
    }

    fn norms<'a>(&self, layer: &'a Layer) -> (Epilogue<'a>, Epilogue<'a>) {
        (
            Epilogue::LayerNorm {
                gamma: &layer.ln1_gamma,
                beta: &layer.ln1_beta,
                eps: self.eps,
            },
            Epilogue::LayerNorm {
                gamma: &layer.ln2_gamma,
                beta: &layer.ln2_beta,
                eps: self.eps,
            },
        )
    }

    fn last_layer_first_tokens(&self, layer: &Layer, batch: &PackedBatch, ws: &mut Workspace) {
        let t = batch.tokens();
        let s = batch.sequences();
        let h = self.hidden;
        let d = h / self.heads;
        let (ln1, ln2) = self.norms(layer);
        let (wq, wkv) = layer
            .split_qkv
            .as_ref()
            .expect("last layer keeps split Q/KV weights");
        let qz = &mut ws.quantized;
        // K and V for every token, into ws.qkv as [t x 2h].
        wkv.run(&ws.x, h, t, &mut ws.qkv, 2 * h, false, Epilogue::None, qz);
        // First-token rows, their queries.
        ws.first.clear();
        for i in 0..s {
            ws.first
                .extend_from_slice(&ws.x[batch.offsets[i] * h..][..h]);
        }
        ws.first_q.resize(s * h, 0.0);
        wq.run(
            &ws.first,
            h,
            s,
            &mut ws.first_q,
            h,
            false,
            Epilogue::None,
            qz,
        );
        // One query row per (sequence, head).
        ws.first_ctx.resize(s * h, 0.0);
        let scale = 1.0 / (d as f32).sqrt();
        let kv = &ws.qkv;
        let fq = &ws.first_q;
        ws.first_ctx
            .par_chunks_mut(h)
            .enumerate()
            .for_each(|(i, out)| {
                let start = batch.offsets[i];
                let len = batch.offsets[i + 1] - start;
                let mut p = vec![0.0f32; len];
                for hd in 0..self.heads {
                    let q = &fq[i * h + hd * d..][..d];
                    for (j, pj) in p.iter_mut().enumerate() {
                        let k = &kv[(start + j) * 2 * h + hd * d..][..d];
                        *pj = q.iter().zip(k).map(|(a, b)| a * b).sum();
                    }
                    ops::softmax(&mut p, scale);
                    let o = &mut out[hd * d..(hd + 1) * d];
                    o.fill(0.0);
                    for (j, &pj) in p.iter().enumerate() {
                        let v = &kv[(start + j) * 2 * h + h + hd * d..][..d];
                        for (oc, &vc) in o.iter_mut().zip(v) {
                            *oc += pj * vc;
                        }
                    }
                }
            });
        layer
            .attn_out
            .run(&ws.first_ctx, h, s, &mut ws.first, h, true, ln1, qz);
        ws.inter.resize(s.max(1) * self.inter, 0.0);
        layer.ffn_in.run(
            &ws.first,
            h,
            s,
            &mut ws.inter,
            self.inter,
            false,
            self.act(),
            qz,
        );
        layer
            .ffn_out
            .run(&ws.inter, self.inter, s, &mut ws.first, h, true, ln2, qz);
    }
}

/// The classification head: `logits = W2 * tanh(W1 * h_first + b1) + b2` on each sequence's
/// first token (BERT's pooler + classifier, XLM-R's dense + out_proj).
pub struct ClassifierHead {
    hidden: usize,
    labels: usize,
    dense_w: Vec<f32>,
    dense_b: Vec<f32>,
    out_w: Vec<f32>,
    out_b: Vec<f32>,
}

impl ClassifierHead {
    /// Loads the head from the given tensor names.
    pub fn load(cfg: &ModelConfig, w: &Weights, dense: &str, out: &str) -> Result<Self> {
        let h = cfg.hidden_size;
        let l = cfg.num_labels;
        Ok(ClassifierHead {
            hidden: h,
            labels: l,
            dense_w: w.get(&format!("{dense}.weight"), &[h, h])?,
            dense_b: w.get(&format!("{dense}.bias"), &[h])?,
            out_w: w.get(&format!("{out}.weight"), &[l, h])?,
            out_b: w.get(&format!("{out}.bias"), &[l])?,
        })
    }

    /// Logits of every sequence from its first-token hidden state (`first` is
    /// `[sequences x hidden]`).
    pub fn logits(&self, first: &[f32]) -> Vec<Vec<f32>> {
        let h = self.hidden;
        first
            .chunks_exact(h)
            .map(|cls| {
                let pooled: Vec<f32> = (0..h)
                    .map(|j| {
                        let w = &self.dense_w[j * h..][..h];
                        let dot: f32 = w.iter().zip(cls).map(|(a, b)| a * b).sum();
                        (dot + self.dense_b[j]).tanh()
                    })
                    .collect();
                (0..self.labels)
                    .map(|l| {
                        let w = &self.out_w[l * h..][..h];
                        w.iter().zip(&pooled).map(|(a, b)| a * b).sum::<f32>() + self.out_b[l]
                    })
                    .collect()
            })
            .collect()
    }
}

//! Qwen3 and Qwen2 decoders as rerankers, on packed tokens with causal attention per
//! sequence (no padding, so no left-padding artefacts).
//!
//! Qwen3: per-head RMSNorm of q and k before RoPE, no q/k/v bias; Qwen2: q/k/v bias, no q/k
//! norm. Both: grouped-query attention, SwiGLU MLP, RMSNorm, a final norm. The score is read at
//! each sequence's last token: for a `*ForCausalLM` checkpoint one dot product with the
//! difference of two rows of the LM head (`w_true - w_false`; the vocabulary-sized product is
//! never computed), for a `*ForSequenceClassification` conversion the `score` row.

use super::blocks::{self, Act, GatedMlp, Heads, Mask, PrefixKv, Rope};
use super::encoder::{PackedBatch, Quantize};
use super::linear::Linear;
use super::prefix;
use crate::error::{EngineError, Result};
use crate::kernels::gemm::Epilogue;
use crate::weights::Weights;
use serde::Deserialize;

/// Which decoder family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Qwen2 / Qwen2.5 (mxbai-rerank-v2).
    Qwen2,
    /// Qwen3 (Qwen3-Reranker).
    Qwen3,
}

#[derive(Debug, Deserialize)]
struct Raw {
    hidden_size: usize,
    num_attention_heads: usize,
    num_hidden_layers: usize,
    intermediate_size: usize,
    vocab_size: usize,
    #[serde(default)]
    num_key_value_heads: Option<usize>,
    #[serde(default)]
    head_dim: Option<usize>,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    #[serde(default)]
    rope_theta: Option<f64>,
    #[serde(default)]
    rope_parameters: Option<serde_json::Value>,
    #[serde(default)]
    attention_bias: Option<bool>,
    #[serde(default = "default_act")]
    hidden_act: String,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    use_sliding_window: bool,
    #[serde(default)]
    rope_scaling: Option<serde_json::Value>,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_act() -> String {
    "silu".into()
}

/// The parts of a Qwen config the model needs.
#[derive(Debug, Clone)]
pub struct QwenConfig {
    family: Family,
    hidden: usize,
    heads: usize,
    kv_heads: usize,
    d: usize,
    layers: usize,
    inter: usize,
    /// Rows of the embedding table.
    pub vocab: usize,
    eps: f32,
    theta: f64,
    qkv_bias: bool,
    act: Act,
    tied: bool,
}

impl QwenConfig {
    /// Parses `config.json` text for `family`.
    pub fn from_json(text: &str, family: Family) -> std::result::Result<Self, String> {
        let r: Raw = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let heads = r.num_attention_heads;
        let kv_heads = r.num_key_value_heads.unwrap_or(heads);
        if heads == 0 || kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
            return Err(format!(
                "num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads}"
            ));
        }
        let d = r.head_dim.unwrap_or(r.hidden_size / heads);
        if d == 0 || d % 2 == 1 {
            return Err(format!("head_dim {d} must be even and positive"));
        }
        if r.use_sliding_window {
            return Err("use_sliding_window: true is not supported".into());
        }
        if let Some(s) = &r.rope_scaling {
            if !s.is_null() {
                return Err(format!("rope_scaling {s} is not supported"));
            }
        }
        let theta = r
            .rope_parameters
            .as_ref()
            .and_then(|p| p.get("rope_theta"))
            .and_then(|v| v.as_f64())
            .or(r.rope_theta)
            .unwrap_or(1_000_000.0);
        Ok(QwenConfig {
            family,
            hidden: r.hidden_size,
            heads,
            kv_heads,
            d,
            layers: r.num_hidden_layers,
            inter: r.intermediate_size,
            vocab: r.vocab_size,
            eps: r.rms_norm_eps as f32,
            theta,
            qkv_bias: r.attention_bias.unwrap_or(family == Family::Qwen2),
            act: Act::from_name(&r.hidden_act)
                .ok_or_else(|| format!("hidden_act {:?} is not supported", r.hidden_act))?,
            tied: r.tie_word_embeddings,
        })
    }
}

/// How the score is read from the last token's final state.
pub enum ScoreHead {
    /// A causal LM: `h . (lm_head[true] - lm_head[false])`.
    AnswerTokens {
        /// Token scored as "relevant".
        true_id: u32,
        /// Token scored as "not relevant".
        false_id: u32,
    },
    /// A sequence classifier: `score.weight` rows (`labels x hidden`).
    Classifier {
        /// Labels.
        labels: usize,
    },
}

struct Layer {
    input_norm: Vec<f32>,
    qkv: Linear,
    q_norm: Option<Vec<f32>>,
    k_norm: Option<Vec<f32>>,
    o: Linear,
    post_norm: Vec<f32>,
    mlp: GatedMlp,
}

/// A loaded decoder reranker.
pub struct Qwen {
    cfg: QwenConfig,
    embeddings: Vec<f32>,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    /// `[outputs x hidden]` rows dotted with the last state.
    head: Vec<f32>,
    outputs: usize,
}

/// What a layer pass does with shared-prefix keys and values.
enum Cache<'a> {
    /// Nothing cached.
    None,
    /// Keep each layer's key / value rows (`[tokens x 2 kv width]`).
    Store(&'a mut Vec<Vec<f32>>),
    /// Continue the cached rows: per sequence (first row, rows).
    Read(&'a [Vec<f32>], &'a [(usize, usize)]),
}

/// Activation buffers of one forward pass.
pub type QwenWorkspace = blocks::RotaryWorkspace;

impl Qwen {
    /// Loads the decoder (tensors under `model.`) and its score head.
    pub fn load(
        cfg: &QwenConfig,
        w: &Weights,
        head: ScoreHead,
        quantize: Quantize,
    ) -> Result<Self> {
        let (h, i, d) = (cfg.hidden, cfg.inter, cfg.d);
        let (qw, kvw) = (cfg.heads * d, cfg.kv_heads * d);
        let get = |name: &str, shape: &[usize]| w.get(&format!("model.{name}"), shape);
        let mut layers = Vec::with_capacity(cfg.layers);
        for l in 0..cfg.layers {
            let p = format!("layers.{l}.");
            let mut qkv = get(&format!("{p}self_attn.q_proj.weight"), &[qw, h])?;
            qkv.extend(get(&format!("{p}self_attn.k_proj.weight"), &[kvw, h])?);
            qkv.extend(get(&format!("{p}self_attn.v_proj.weight"), &[kvw, h])?);
            let bias = if cfg.qkv_bias {
                let mut b = get(&format!("{p}self_attn.q_proj.bias"), &[qw])?;
                b.extend(get(&format!("{p}self_attn.k_proj.bias"), &[kvw])?);
                b.extend(get(&format!("{p}self_attn.v_proj.bias"), &[kvw])?);
                b
            } else {
                Vec::new()
            };
            let norms = cfg.family == Family::Qwen3;
            let mut up = get(&format!("{p}mlp.gate_proj.weight"), &[i, h])?;
            up.extend(get(&format!("{p}mlp.up_proj.weight"), &[i, h])?);
            layers.push(Layer {
                input_norm: get(&format!("{p}input_layernorm.weight"), &[h])?,
                qkv: Linear::new(&qkv, qw + 2 * kvw, h, bias, quantize),
                q_norm: if norms {
                    Some(get(&format!("{p}self_attn.q_norm.weight"), &[d])?)
                } else {
                    None
                },
                k_norm: if norms {
                    Some(get(&format!("{p}self_attn.k_norm.weight"), &[d])?)
                } else {
                    None
                },
                o: Linear::new(
                    &get(&format!("{p}self_attn.o_proj.weight"), &[h, qw])?,
                    h,
                    qw,
                    Vec::new(),
                    quantize,
                ),
                post_norm: get(&format!("{p}post_attention_layernorm.weight"), &[h])?,
                mlp: GatedMlp {
                    up: Linear::new(&up, 2 * i, h, Vec::new(), quantize),
                    down: Linear::new(
                        &get(&format!("{p}mlp.down_proj.weight"), &[h, i])?,
                        h,
                        i,
                        Vec::new(),
                        quantize,
                    ),
                    inter: i,
                    act: cfg.act,
                },
            });
        }
        let embeddings = get("embed_tokens.weight", &[cfg.vocab, h])?;
        let (head, outputs) = match head {
            ScoreHead::AnswerTokens { true_id, false_id } => {
                for id in [true_id, false_id] {
                    if id as usize >= cfg.vocab {
                        return Err(EngineError::InvalidOption(format!(
                            "answer token id {id} is outside the vocabulary of {}",
                            cfg.vocab
                        )));
                    }
                }
                let rows = |id: u32| -> Result<Vec<f32>> {
                    if w.contains("lm_head.weight") && !cfg.tied {
                        let all = w.get("lm_head.weight", &[cfg.vocab, h])?;
                        Ok(all[id as usize * h..][..h].to_vec())
                    } else {
                        Ok(embeddings[id as usize * h..][..h].to_vec())
                    }
                };
                let (t, f) = (rows(true_id)?, rows(false_id)?);
                (t.iter().zip(&f).map(|(a, b)| a - b).collect(), 1)
            }
            ScoreHead::Classifier { labels } => (w.get("score.weight", &[labels, h])?, labels),
        };
        Ok(Qwen {
            norm: get("norm.weight", &[h])?,
            embeddings,
            layers,
            head,
            outputs,
            cfg: cfg.clone(),
        })
    }

    /// Nominal FLOPs of one sequence of `len` tokens (causal attention counted in full).
    pub fn flops(&self, len: usize) -> f64 {
        self.flops_after(0, len)
    }

    /// FLOPs of `len` tokens that continue `context` cached ones (their attention spans both).
    fn flops_after(&self, context: usize, len: usize) -> f64 {
        let c = &self.cfg;
        let (h, i, n, p) = (c.hidden as f64, c.inter as f64, len as f64, context as f64);
        let (qw, kvw) = ((c.heads * c.d) as f64, (c.kv_heads * c.d) as f64);
        let linear = 2.0 * n * (h * (qw + 2.0 * kvw) + qw * h + 3.0 * h * i);
        c.layers as f64 * (linear + 2.0 * n * (n + 2.0 * p) * qw)
    }

    /// FLOPs [`Qwen::forward`] executes on `batch`: each shared prefix once, then every
    /// sequence's own tokens.
    pub fn batch_flops(&self, batch: &PackedBatch) -> f64 {
        let lens =
            |b: &PackedBatch| -> Vec<usize> { b.offsets.windows(2).map(|w| w[1] - w[0]).collect() };
        match prefix::split(batch, prefix::MIN_SHARED) {
            None => lens(batch).iter().map(|&n| self.flops(n)).sum(),
            Some(split) => {
                let shared: f64 = lens(&split.prefixes).iter().map(|&n| self.flops(n)).sum();
                let own: f64 = lens(&split.suffixes)
                    .iter()
                    .zip(&split.ranges)
                    .map(|(&n, &(_, p))| self.flops_after(p, n))
                    .sum();
                shared + own
            }
        }
    }

    /// Scores of every sequence, read at its last token. Leading tokens that sequences share
    /// (the template and query of one request) run once: see [`super::prefix`].
    pub fn forward(&self, batch: &PackedBatch, ws: &mut QwenWorkspace) -> Vec<Vec<f32>> {
        let Some(split) = prefix::split(batch, prefix::MIN_SHARED) else {
            self.layers(batch, Cache::None, ws);
            return self.read_scores(batch, ws);
        };
        let mut kv = std::mem::take(&mut ws.prefix_kv);
        self.layers(&split.prefixes, Cache::Store(&mut kv), ws);
        self.layers(&split.suffixes, Cache::Read(&kv, &split.ranges), ws);
        ws.prefix_kv = kv;
        self.read_scores(&split.suffixes, ws)
    }

    /// Runs every layer over `batch` into `ws.x`; with `Cache::Store` the keys and values of
    /// each layer are kept (and the last layer stops there: only they are needed), with
    /// `Cache::Read` each sequence continues the cached prefix rows it is given.
    fn layers(&self, batch: &PackedBatch, mut cache: Cache, ws: &mut QwenWorkspace) {
        let c = &self.cfg;
        let (h, d, t) = (c.hidden, c.d, batch.tokens());
        let (qw, kvw) = (c.heads * d, c.kv_heads * d);
        let ld = qw + 2 * kvw;
        ws.embed(&batch.ids, &self.embeddings, h);
        let span = batch.positions.iter().max().map_or(0, |&p| p as usize + 1);
        let rope = Rope::new(d, c.theta, span);
        let heads = Heads {
            q_heads: c.heads,
            kv_heads: c.kv_heads,
            d,
            ld,
            q_col: 0,
            k_col: qw,
            v_col: qw + kvw,
        };
        if let Cache::Store(kv) = &mut cache {
            kv.resize_with(self.layers.len(), Vec::new);
        }
        for (l, layer) in self.layers.iter().enumerate() {
            ws.normed_copy(|y| blocks::rms_norm_rows(y, h, &layer.input_norm, c.eps));
            ws.qkv.resize(t * ld, 0.0);
            layer.qkv.run(
                &ws.y,
                h,
                t,
                &mut ws.qkv,
                ld,
                false,
                Epilogue::None,
                &mut ws.q,
            );
            if let (Some(qn), Some(kn)) = (&layer.q_norm, &layer.k_norm) {
                use rayon::prelude::*;
                ws.qkv.par_chunks_mut(ld).for_each(|row| {
                    for hd in 0..c.heads {
                        blocks::rms_norm(&mut row[hd * d..(hd + 1) * d], qn, c.eps);
                    }
                    for hd in 0..c.kv_heads {
                        blocks::rms_norm(&mut row[qw + hd * d..qw + (hd + 1) * d], kn, c.eps);
                    }
                });
            }
            blocks::apply_rope(
                &mut ws.qkv,
                ld,
                0,
                c.heads + c.kv_heads,
                d,
                &batch.positions,
                &rope,
            );
            let prefix = match &mut cache {
                Cache::Store(kv) => {
                    let rows = &mut kv[l];
                    rows.clear();
                    for row in ws.qkv.chunks_exact(ld) {
                        rows.extend_from_slice(&row[qw..]);
                    }
                    if l + 1 == self.layers.len() {
                        return;
                    }
                    None
                }
                Cache::Read(kv, ranges) => Some(PrefixKv {
                    rows: &kv[l],
                    ld: 2 * kvw,
                    k_col: 0,
                    v_col: kvw,
                    ranges,
                }),
                Cache::None => None,
            };
            ws.ctx.resize(t * qw, 0.0);
            blocks::attention(
                &batch.offsets,
                &ws.qkv,
                heads,
                Mask::Causal,
                prefix,
                &mut ws.ctx,
            );
            layer.o.run(
                &ws.ctx,
                qw,
                t,
                &mut ws.x,
                h,
                true,
                Epilogue::None,
                &mut ws.q,
            );
            ws.mlp_residual(&layer.mlp, h, t, |y| {
                blocks::rms_norm_rows(y, h, &layer.post_norm, c.eps)
            });
        }
    }

    /// The score head at each sequence's last row of `ws.x`.
    fn read_scores(&self, batch: &PackedBatch, ws: &QwenWorkspace) -> Vec<Vec<f32>> {
        let (c, h) = (&self.cfg, self.cfg.hidden);
        (0..batch.sequences())
            .map(|s| {
                let last = batch.offsets[s + 1] - 1;
                let mut state = ws.x[last * h..(last + 1) * h].to_vec();
                blocks::rms_norm(&mut state, &self.norm, c.eps);
                (0..self.outputs)
                    .map(|o| {
                        let row = &self.head[o * h..(o + 1) * h];
                        row.iter().zip(&state).map(|(a, b)| a * b).sum()
                    })
                    .collect()
            })
            .collect()
    }
}

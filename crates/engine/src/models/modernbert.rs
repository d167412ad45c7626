//! ModernBERT (`ModernBertForSequenceClassification`, gte-reranker-modernbert, and the
//! backbone of Ettin module chains) on packed tokens.
//!
//! Pre-norm layers (no norm before layer 0's attention), one fused `Wqkv` product, rotary
//! positions with a global and a local theta, alternating full and sliding-window attention
//! (key j visible from query i iff `|i - j| <= local_attention / 2`, transformers' rule), a
//! GELU-gated MLP (`Wi` gives `[input | gate]`), bias-free linears and norms where the config
//! says so, a final norm, then a pooled head (`cls` or `mean` -> dense -> act -> norm ->
//! classifier) or a module chain.

use super::blocks::{self, Act, GatedMlp, HeadStep, Heads, Mask, Rope};
use super::encoder::{PackedBatch, Quantize};
use super::linear::Linear;
use crate::error::{EngineError, Result};
use crate::kernels::gemm::Epilogue;
use crate::weights::Weights;
use serde::Deserialize;

/// How a sequence's token states become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// The first token.
    Cls,
    /// Mean over all tokens (special tokens included, as the reference's mask has them).
    Mean,
}

#[derive(Debug, Deserialize)]
struct Raw {
    hidden_size: usize,
    num_attention_heads: usize,
    num_hidden_layers: usize,
    intermediate_size: usize,
    vocab_size: usize,
    #[serde(default = "default_eps")]
    norm_eps: f64,
    #[serde(default)]
    norm_bias: bool,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
    #[serde(default = "default_act")]
    hidden_activation: String,
    #[serde(default = "default_global_every")]
    global_attn_every_n_layers: usize,
    #[serde(default)]
    layer_types: Option<Vec<String>>,
    #[serde(default = "default_local")]
    local_attention: usize,
    #[serde(default)]
    global_rope_theta: Option<f64>,
    #[serde(default)]
    local_rope_theta: Option<f64>,
    #[serde(default)]
    rope_parameters: Option<serde_json::Value>,
    #[serde(default = "default_pooling")]
    classifier_pooling: String,
    #[serde(default = "default_act")]
    classifier_activation: String,
    #[serde(default)]
    classifier_bias: bool,
}

fn default_eps() -> f64 {
    1e-5
}
fn default_act() -> String {
    "gelu".into()
}
fn default_global_every() -> usize {
    3
}
fn default_local() -> usize {
    128
}
fn default_pooling() -> String {
    "cls".into()
}

/// The parts of a ModernBERT config the model needs.
#[derive(Debug, Clone)]
pub struct ModernBertConfig {
    hidden: usize,
    heads: usize,
    layers: usize,
    inter: usize,
    vocab: usize,
    eps: f32,
    norm_bias: bool,
    attention_bias: bool,
    mlp_bias: bool,
    act: Act,
    global: Vec<bool>,
    window_half: usize,
    global_theta: f64,
    local_theta: f64,
    /// Pooling of the native classification head.
    pub pooling: Pool,
    head_act: Act,
    classifier_bias: bool,
}

fn theta(rope: &Option<serde_json::Value>, key: &str) -> Option<f64> {
    rope.as_ref()?.get(key)?.get("rope_theta")?.as_f64()
}

impl ModernBertConfig {
    /// Parses `config.json` text.
    pub fn from_json(text: &str) -> std::result::Result<Self, String> {
        let r: Raw = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if r.num_attention_heads == 0 || !r.hidden_size.is_multiple_of(r.num_attention_heads) {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                r.hidden_size, r.num_attention_heads
            ));
        }
        let act = |name: &str, field: &str| {
            Act::from_name(name).ok_or_else(|| format!("{field} {name:?} is not supported"))
        };
        let global = match &r.layer_types {
            Some(t) => {
                if t.len() != r.num_hidden_layers {
                    return Err(format!(
                        "layer_types has {} entries for {} layers",
                        t.len(),
                        r.num_hidden_layers
                    ));
                }
                t.iter()
                    .map(|l| match l.as_str() {
                        "full_attention" => Ok(true),
                        "sliding_attention" => Ok(false),
                        other => Err(format!("layer type {other:?} is not supported")),
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()?
            }
            None => (0..r.num_hidden_layers)
                .map(|i| i % r.global_attn_every_n_layers.max(1) == 0)
                .collect(),
        };
        let pooling = match r.classifier_pooling.as_str() {
            "cls" => Pool::Cls,
            "mean" => Pool::Mean,
            other => return Err(format!("classifier_pooling {other:?} is not supported")),
        };
        Ok(ModernBertConfig {
            hidden: r.hidden_size,
            heads: r.num_attention_heads,
            layers: r.num_hidden_layers,
            inter: r.intermediate_size,
            vocab: r.vocab_size,
            eps: r.norm_eps as f32,
            norm_bias: r.norm_bias,
            attention_bias: r.attention_bias,
            mlp_bias: r.mlp_bias,
            act: act(&r.hidden_activation, "hidden_activation")?,
            global,
            window_half: r.local_attention / 2,
            global_theta: theta(&r.rope_parameters, "full_attention")
                .or(r.global_rope_theta)
                .unwrap_or(160_000.0),
            local_theta: theta(&r.rope_parameters, "sliding_attention")
                .or(r.local_rope_theta)
                .unwrap_or(10_000.0),
            pooling,
            head_act: act(&r.classifier_activation, "classifier_activation")?,
            classifier_bias: r.classifier_bias,
        })
    }
}

struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

struct Layer {
    attn_norm: Option<Norm>,
    wqkv: Linear,
    wo: Linear,
    mlp_norm: Norm,
    mlp: GatedMlp,
}

/// A loaded ModernBERT encoder with its head.
pub struct ModernBert {
    cfg: ModernBertConfig,
    embeddings: Vec<f32>,
    emb_norm: Norm,
    layers: Vec<Layer>,
    final_norm: Norm,
    pooling: Pool,
    head: Vec<HeadStep>,
}

/// Activation buffers of one forward pass.
pub type ModernBertWorkspace = blocks::RotaryWorkspace;

impl ModernBert {
    /// Loads the backbone; tensors under `prefix` (`model.` in a classifier, none in a
    /// module chain's Transformer). `head` is the native classifier head when `labels` is
    /// Some, else none (a module chain supplies it with [`ModernBert::with_head`]).
    pub fn load(
        cfg: &ModernBertConfig,
        w: &Weights,
        prefix: &str,
        labels: Option<usize>,
        quantize: Quantize,
    ) -> Result<Self> {
        let h = cfg.hidden;
        let i = cfg.inter;
        let get = |name: &str, shape: &[usize]| w.get(&format!("{prefix}{name}"), shape);
        let norm = |name: &str, bias: bool| -> Result<Norm> {
            Ok(Norm {
                gamma: get(&format!("{name}.weight"), &[h])?,
                beta: if bias {
                    get(&format!("{name}.bias"), &[h])?
                } else {
                    Vec::new()
                },
            })
        };
        let linear = |name: &str, n: usize, k: usize, bias: bool| -> Result<Linear> {
            let wt = get(&format!("{name}.weight"), &[n, k])?;
            let b = if bias {
                get(&format!("{name}.bias"), &[n])?
            } else {
                Vec::new()
            };
            Ok(Linear::new(&wt, n, k, b, quantize))
        };
        let mut layers = Vec::with_capacity(cfg.layers);
        for l in 0..cfg.layers {
            let p = format!("layers.{l}.");
            layers.push(Layer {
                attn_norm: if l == 0 {
                    None
                } else {
                    Some(norm(&format!("{p}attn_norm"), cfg.norm_bias)?)
                },
                wqkv: linear(&format!("{p}attn.Wqkv"), 3 * h, h, cfg.attention_bias)?,
                wo: linear(&format!("{p}attn.Wo"), h, h, cfg.attention_bias)?,
                mlp_norm: norm(&format!("{p}mlp_norm"), cfg.norm_bias)?,
                mlp: GatedMlp {
                    up: linear(&format!("{p}mlp.Wi"), 2 * i, h, cfg.mlp_bias)?,
                    down: linear(&format!("{p}mlp.Wo"), h, i, cfg.mlp_bias)?,
                    inter: i,
                    act: cfg.act,
                },
            });
        }
        let head = match labels {
            Some(labels) => vec![
                HeadStep::Dense {
                    w: w.get("head.dense.weight", &[h, h])?,
                    b: if cfg.classifier_bias {
                        w.get("head.dense.bias", &[h])?
                    } else {
                        Vec::new()
                    },
                    k: h,
                    n: h,
                    act: cfg.head_act,
                },
                HeadStep::LayerNorm {
                    gamma: w.get("head.norm.weight", &[h])?,
                    beta: if cfg.norm_bias {
                        w.get("head.norm.bias", &[h])?
                    } else {
                        Vec::new()
                    },
                    eps: cfg.eps,
                },
                HeadStep::Dense {
                    w: w.get("classifier.weight", &[labels, h])?,
                    b: w.get("classifier.bias", &[labels])?,
                    k: h,
                    n: labels,
                    act: Act::Identity,
                },
            ],
            None => Vec::new(),
        };
        Ok(ModernBert {
            embeddings: get("embeddings.tok_embeddings.weight", &[cfg.vocab, h])?,
            emb_norm: norm("embeddings.norm", cfg.norm_bias)?,
            final_norm: norm("final_norm", cfg.norm_bias)?,
            layers,
            pooling: cfg.pooling,
            head,
            cfg: cfg.clone(),
        })
    }

    /// Replaces the pooling and head (a sentence-transformers module chain).
    pub fn with_head(mut self, pooling: Pool, head: Vec<HeadStep>) -> Self {
        self.pooling = pooling;
        self.head = head;
        self
    }

    /// Hidden width.
    pub fn hidden(&self) -> usize {
        self.cfg.hidden
    }

    /// Nominal FLOPs of one sequence of `len` tokens (linear layers and attention).
    pub fn flops(&self, len: usize) -> f64 {
        let (h, i, n) = (self.cfg.hidden as f64, self.cfg.inter as f64, len as f64);
        let per_layer = |global: bool| {
            let keys = if global {
                n
            } else {
                n.min(2.0 * self.cfg.window_half as f64 + 1.0)
            };
            n * 2.0 * (4.0 * h * h + 3.0 * h * i) + 4.0 * n * keys * h
        };
        self.cfg.global.iter().map(|&g| per_layer(g)).sum()
    }

    /// Final hidden states of every token, `[tokens x hidden]`, in `ws.x`.
    fn encode(&self, batch: &PackedBatch, ws: &mut ModernBertWorkspace) {
        let h = self.cfg.hidden;
        let t = batch.tokens();
        let d = h / self.cfg.heads;
        ws.embed(&batch.ids, &self.embeddings, h);
        let eps = self.cfg.eps;
        blocks::layer_norm_rows(&mut ws.x, h, &self.emb_norm.gamma, &self.emb_norm.beta, eps);
        let longest = blocks::longest(&batch.offsets);
        let global_rope = Rope::new(d, self.cfg.global_theta, longest);
        let local_rope = Rope::new(d, self.cfg.local_theta, longest);
        let heads = Heads {
            q_heads: self.cfg.heads,
            kv_heads: self.cfg.heads,
            d,
            ld: 3 * h,
            q_col: 0,
            k_col: h,
            v_col: 2 * h,
        };
        for (l, layer) in self.layers.iter().enumerate() {
            let global = self.cfg.global[l];
            ws.normed_copy(|y| {
                if let Some(n) = &layer.attn_norm {
                    blocks::layer_norm_rows(y, h, &n.gamma, &n.beta, eps);
                }
            });
            ws.qkv.resize(t * 3 * h, 0.0);
            layer.wqkv.run(
                &ws.y,
                h,
                t,
                &mut ws.qkv,
                3 * h,
                false,
                Epilogue::None,
                &mut ws.q,
            );
            let rope = if global { &global_rope } else { &local_rope };
            blocks::apply_rope(
                &mut ws.qkv,
                3 * h,
                0,
                2 * self.cfg.heads,
                d,
                &batch.positions,
                rope,
            );
            ws.ctx.resize(t * h, 0.0);
            let mask = if global {
                Mask::Full
            } else {
                Mask::Window(self.cfg.window_half)
            };
            blocks::attention(&batch.offsets, &ws.qkv, heads, mask, None, &mut ws.ctx);
            layer
                .wo
                .run(&ws.ctx, h, t, &mut ws.x, h, true, Epilogue::None, &mut ws.q);
            let n = &layer.mlp_norm;
            ws.mlp_residual(&layer.mlp, h, t, |y| {
                blocks::layer_norm_rows(y, h, &n.gamma, &n.beta, eps)
            });
        }
        let n = &self.final_norm;
        blocks::layer_norm_rows(&mut ws.x, h, &n.gamma, &n.beta, eps);
    }

    /// Head outputs of every sequence.
    pub fn forward(&self, batch: &PackedBatch, ws: &mut ModernBertWorkspace) -> Vec<Vec<f32>> {
        self.encode(batch, ws);
        let h = self.cfg.hidden;
        (0..batch.sequences())
            .map(|s| {
                let (a, b) = (batch.offsets[s], batch.offsets[s + 1]);
                let pooled = match self.pooling {
                    Pool::Cls => ws.x[a * h..(a + 1) * h].to_vec(),
                    Pool::Mean => {
                        let mut v = vec![0.0f32; h];
                        for r in a..b {
                            for (acc, x) in v.iter_mut().zip(&ws.x[r * h..(r + 1) * h]) {
                                *acc += x;
                            }
                        }
                        let n = (b - a).max(1) as f32;
                        v.iter_mut().for_each(|x| *x /= n);
                        v
                    }
                };
                blocks::run_head(&self.head, pooled)
            })
            .collect()
    }
}

/// Checks a loaded head ends in the expected number of outputs.
pub fn check_head_outputs(head: &[HeadStep], hidden: usize) -> Result<usize> {
    let mut width = hidden;
    for step in head {
        if let HeadStep::Dense { k, n, .. } = step {
            if *k != width {
                return Err(EngineError::InvalidOption(format!(
                    "a Dense module takes {k} inputs after a layer of {width}"
                )));
            }
            width = *n;
        }
    }
    Ok(width)
}

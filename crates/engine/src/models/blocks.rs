//! Building blocks of the rotary-position models (ModernBERT, Qwen2 / Qwen3) on packed
//! tokens: RMSNorm, rotary embeddings, attention with full / sliding-window / causal masks and
//! grouped-query heads (the BERT encoder's attention too, with the full mask), and the pooled
//! head chains (sentence-transformers modules).

use super::linear::Linear;
use crate::kernels::gemm::{Epilogue, Gemm, PackedMatrix};
use crate::kernels::ops;
use crate::kernels::qgemm::QuantizedRows;
use rayon::prelude::*;
use std::cell::RefCell;

/// Which keys a query may see within its sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mask {
    /// Every key.
    Full,
    /// Keys with `|i - j| <= half` (ModernBERT's local layers).
    Window(usize),
    /// Keys `j <= i` (decoders).
    Causal,
}

/// In place: x = x / sqrt(mean(x^2) + eps) * weight, per row of `width`.
pub fn rms_norm_rows(x: &mut [f32], width: usize, weight: &[f32], eps: f32) {
    x.par_chunks_mut(width)
        .for_each(|row| rms_norm(row, weight, eps));
}

/// RMSNorm of one row.
pub fn rms_norm(row: &mut [f32], weight: &[f32], eps: f32) {
    let ms = row.iter().map(|v| v * v).sum::<f32>() / row.len() as f32;
    let inv = 1.0 / (ms + eps).sqrt();
    for (v, w) in row.iter_mut().zip(weight) {
        *v = *v * inv * w;
    }
}

/// LayerNorm of every row (`beta` empty: no bias).
pub fn layer_norm_rows(x: &mut [f32], width: usize, gamma: &[f32], beta: &[f32], eps: f32) {
    if beta.is_empty() {
        let zeros = vec![0.0f32; width];
        x.par_chunks_mut(width)
            .for_each(|row| ops::layer_norm(row, gamma, &zeros, eps));
    } else {
        x.par_chunks_mut(width)
            .for_each(|row| ops::layer_norm(row, gamma, beta, eps));
    }
}

/// cos / sin tables of rotary embeddings for positions `0..len`, computed in f32 the way
/// transformers does (`inv_freq = 1 / theta^(2i/d)`, angle = position * inv_freq).
pub struct Rope {
    half: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl Rope {
    /// Tables for head width `d` and base `theta`, positions below `len`.
    pub fn new(d: usize, theta: f64, len: usize) -> Self {
        let half = d / 2;
        let inv: Vec<f32> = (0..half)
            .map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / d as f32))
            .collect();
        let mut cos = Vec::with_capacity(len * half);
        let mut sin = Vec::with_capacity(len * half);
        for p in 0..len {
            for f in &inv {
                let a = p as f32 * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        Rope { half, cos, sin }
    }

    /// Rotates one head's vector at `position` (the rotate-half layout).
    #[inline]
    pub fn apply(&self, x: &mut [f32], position: usize) {
        let h = self.half;
        let (c, s) = (
            &self.cos[position * h..][..h],
            &self.sin[position * h..][..h],
        );
        let (a, b) = x.split_at_mut(h);
        for i in 0..h {
            let (x1, x2) = (a[i], b[i]);
            a[i] = x1 * c[i] - x2 * s[i];
            b[i] = x2 * c[i] + x1 * s[i];
        }
    }
}

/// Rotates `heads` heads of width `d` starting at column `col` of every row of `x` (row stride
/// `ld`), each row at its position in `positions`.
pub fn apply_rope(
    x: &mut [f32],
    ld: usize,
    col: usize,
    heads: usize,
    d: usize,
    positions: &[u32],
    rope: &Rope,
) {
    x.par_chunks_mut(ld).enumerate().for_each(|(r, row)| {
        for hd in 0..heads {
            rope.apply(
                &mut row[col + hd * d..col + (hd + 1) * d],
                positions[r] as usize,
            );
        }
    });
}

struct SyncPtr(*mut f32);
// SAFETY: used only to write disjoint (row, head) cells from parallel tasks.
unsafe impl Sync for SyncPtr {}
// SAFETY: as above; the pointer outlives the parallel section that uses it.
unsafe impl Send for SyncPtr {}

/// Where the query, key and value columns of a packed `[tokens x ld]` matrix are.
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    /// Query heads.
    pub q_heads: usize,
    /// Key / value heads (`q_heads` a multiple of it).
    pub kv_heads: usize,
    /// Head width.
    pub d: usize,
    /// Row stride of the q / k / v matrix.
    pub ld: usize,
    /// First column of the queries, keys and values.
    pub q_col: usize,
    /// See `q_col`.
    pub k_col: usize,
    /// See `q_col`.
    pub v_col: usize,
}

/// Query rows per attention tile: the keys a tile may see are packed once for it, and a
/// sliding-window or causal mask limits them to the tile's range.
const Q_TILE: usize = 64;

/// Keys and values of shared prefixes that each sequence's queries see before its own tokens
/// (see [`super::prefix`]).
#[derive(Debug, Clone, Copy)]
pub struct PrefixKv<'a> {
    /// Rows `[prefix tokens x ld]`: key head `h` at `k_col + h * d`, value head at `v_col + h * d`.
    pub rows: &'a [f32],
    /// Row stride of `rows`.
    pub ld: usize,
    /// First key column.
    pub k_col: usize,
    /// First value column.
    pub v_col: usize,
    /// Per sequence: (first row, rows) of its prefix; 0 rows = none.
    pub ranges: &'a [(usize, usize)],
}

/// Rows of a matrix to pack: (values from the first row, stride, rows).
type Part<'a> = (&'a [f32], usize, usize);

#[derive(Default)]
struct AttnScratch {
    kt: PackedMatrix,
    v: PackedMatrix,
    scores: Vec<f32>,
    out: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<AttnScratch> = RefCell::new(AttnScratch::default());
}

/// Keys `lo..hi` (of a sequence of `len`) that query `i` sees under `mask`.
fn key_range(mask: Mask, i: usize, len: usize) -> (usize, usize) {
    match mask {
        Mask::Full => (0, len),
        Mask::Window(w) => (i.saturating_sub(w), (i + w + 1).min(len)),
        Mask::Causal => (0, i + 1),
    }
}

/// Scaled dot-product attention per (sequence, query head) over the packed rows of `qkv`;
/// writes `[tokens x q_heads * d]` into `out`. Query head `h` reads key / value head
/// `h / (q_heads / kv_heads)`. Each tile of [`Q_TILE`] queries is two GEMMs (scores = Q K^T
/// over the keys the tile may see, then P V) on the engine's packed kernels; keys a query may
/// not see get probability 0. With `prefix`, sequence `s` is the continuation of its prefix
/// rows: its queries see those keys first, positions counted from the prefix's start.
pub fn attention(
    offsets: &[usize],
    qkv: &[f32],
    heads: Heads,
    mask: Mask,
    prefix: Option<PrefixKv>,
    out: &mut [f32],
) {
    let Heads {
        q_heads,
        kv_heads,
        d,
        ld,
        ..
    } = heads;
    let width = q_heads * d;
    let group = (q_heads / kv_heads.max(1)).max(1);
    let scale = 1.0 / (d as f32).sqrt();
    let sequences = offsets.len().saturating_sub(1);
    let mut tasks: Vec<(usize, usize)> = (0..sequences)
        .flat_map(|s| (0..q_heads).map(move |h| (s, h)))
        .collect();
    tasks.sort_by_key(|&(s, _)| std::cmp::Reverse(offsets[s + 1] - offsets[s]));
    let out_len = out.len();
    let dst = SyncPtr(out.as_mut_ptr());
    let dst = &dst;
    tasks.par_iter().for_each(|&(s, h)| {
        let start = offsets[s];
        let len = offsets[s + 1] - start;
        let kvh = h / group;
        SCRATCH.with(|cell| {
            let mut guard = cell.borrow_mut();
            let sc = &mut *guard;
            let (p0, pl) = prefix.map_or((0, 0), |p| p.ranges[s]);
            let total = pl + len;
            let mut r0 = 0;
            while r0 < len {
                let r1 = (r0 + Q_TILE).min(len);
                let (k0, _) = key_range(mask, pl + r0, total);
                let (_, k1) = key_range(mask, pl + r1 - 1, total);
                let nk = k1 - k0;
                match prefix {
                    Some(p) if pl > 0 => {
                        // The prefix's cached keys (rows k0..pl), then the sequence's own.
                        let (cached, own) = (pl.saturating_sub(k0), k1 - k0.max(pl));
                        let (pr, or) = ((p0 + k0.min(pl)) * p.ld, (start + k0.max(pl) - pl) * ld);
                        /// `rows` rows of `src` from `at` (none: an empty part).
                        fn part(src: &[f32], at: usize, ld: usize, rows: usize) -> Part<'_> {
                            (&src[at.min(src.len())..], ld, rows)
                        }
                        let (kc, vc) = (kvh * d + heads.k_col, kvh * d + heads.v_col);
                        let (pk, pv) = (pr + kvh * d + p.k_col, pr + kvh * d + p.v_col);
                        sc.kt.pack_transposed_parts(
                            &[part(p.rows, pk, p.ld, cached), part(qkv, or + kc, ld, own)],
                            d,
                        );
                        sc.v.pack_rows_parts(
                            &[part(p.rows, pv, p.ld, cached), part(qkv, or + vc, ld, own)],
                            d,
                        );
                    }
                    _ => {
                        let krow = (start + k0 - pl) * ld;
                        sc.kt
                            .pack_transposed(&qkv[krow + heads.k_col + kvh * d..], ld, nk, d);
                        sc.v.pack_rows(&qkv[krow + heads.v_col + kvh * d..], ld, nk, d);
                    }
                }
                let lds = nk.div_ceil(32) * 32;
                let m = r1 - r0;
                sc.scores.resize(m * lds, 0.0);
                Gemm {
                    a: &qkv[(start + r0) * ld + heads.q_col + h * d..],
                    lda: ld,
                    m,
                    b: &sc.kt,
                    bias: None,
                    accumulate: false,
                    epilogue: Epilogue::None,
                }
                .run(&mut sc.scores, lds, false);
                for i in r0..r1 {
                    let row = &mut sc.scores[(i - r0) * lds..][..nk];
                    let (lo, hi) = key_range(mask, pl + i, total);
                    ops::softmax(&mut row[lo - k0..hi - k0], scale);
                    row[..lo - k0].fill(0.0);
                    row[hi - k0..].fill(0.0);
                }
                sc.out.resize(m * d, 0.0);
                Gemm {
                    a: &sc.scores,
                    lda: lds,
                    m,
                    b: &sc.v,
                    bias: None,
                    accumulate: false,
                    epilogue: Epilogue::None,
                }
                .run(&mut sc.out, d, false);
                for i in r0..r1 {
                    let at = (start + i) * width + h * d;
                    assert!(at + d <= out_len);
                    // SAFETY: in bounds (asserted); each (row, head) cell is written by one
                    // task only.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            sc.out.as_ptr().add((i - r0) * d),
                            dst.0.add(at),
                            d,
                        )
                    };
                }
                r0 = r1;
            }
        });
    });
}

/// Activation of a head step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// None.
    Identity,
    /// Exact GELU.
    Gelu,
    /// Tanh.
    Tanh,
    /// ReLU.
    Relu,
    /// x * sigmoid(x).
    Silu,
    /// 1 / (1 + e^-x).
    Sigmoid,
}

impl Act {
    /// From a transformers / torch name (`gelu`, `torch.nn.modules.activation.GELU`, ...).
    pub fn from_name(name: &str) -> Option<Act> {
        let last = name.rsplit('.').next().unwrap_or(name).to_ascii_lowercase();
        Some(match last.as_str() {
            "identity" | "linear" | "none" => Act::Identity,
            "gelu" => Act::Gelu,
            "tanh" => Act::Tanh,
            "relu" => Act::Relu,
            "silu" | "swish" => Act::Silu,
            "sigmoid" => Act::Sigmoid,
            _ => return None,
        })
    }
    /// Applies in place.
    pub fn apply(self, x: &mut [f32]) {
        match self {
            Act::Identity => {}
            Act::Gelu => ops::gelu(x),
            Act::Tanh => x.iter_mut().for_each(|v| *v = v.tanh()),
            Act::Relu => ops::relu(x),
            Act::Silu => ops::silu(x),
            Act::Sigmoid => x.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp())),
        }
    }
}

/// One step of a head applied to pooled `[sequences x width]` vectors.
pub enum HeadStep {
    /// `y = act(x W^T + b)`.
    Dense {
        /// Weights (`out x in`).
        w: Vec<f32>,
        /// Bias (empty: none).
        b: Vec<f32>,
        /// Input width.
        k: usize,
        /// Output width.
        n: usize,
        /// Activation.
        act: Act,
    },
    /// LayerNorm (`beta` empty: no bias).
    LayerNorm {
        /// Scale.
        gamma: Vec<f32>,
        /// Shift.
        beta: Vec<f32>,
        /// Epsilon.
        eps: f32,
    },
}

/// Runs a chain of head steps on one pooled vector.
pub fn run_head(steps: &[HeadStep], mut x: Vec<f32>) -> Vec<f32> {
    for step in steps {
        match step {
            HeadStep::Dense { w, b, k, n, act } => {
                let mut y: Vec<f32> = (0..*n)
                    .map(|j| {
                        let row = &w[j * k..][..*k];
                        row.iter().zip(&x).map(|(a, b)| a * b).sum::<f32>()
                            + b.get(j).copied().unwrap_or(0.0)
                    })
                    .collect();
                act.apply(&mut y);
                x = y;
            }
            HeadStep::LayerNorm { gamma, beta, eps } => {
                let zeros;
                let beta = if beta.is_empty() {
                    zeros = vec![0.0; x.len()];
                    &zeros
                } else {
                    beta
                };
                ops::layer_norm(&mut x, gamma, beta, *eps);
            }
        }
    }
    x
}

/// A gated MLP: `down(act(a) * b)` where `[a | b]` (or `[gate | up]`) come from one product.
pub(crate) struct GatedMlp {
    /// `[tokens x 2i]` product: the activated half first, then the multiplier.
    pub(crate) up: Linear,
    /// `[tokens x i] -> [tokens x hidden]`.
    pub(crate) down: Linear,
    /// Intermediate width.
    pub(crate) inter: usize,
    /// The activation of the first half.
    pub(crate) act: Act,
}

impl GatedMlp {
    /// `x += down(act(up(y)[.., :i]) * up(y)[.., i:])` over `t` rows of width `h`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run_residual(
        &self,
        y: &[f32],
        h: usize,
        t: usize,
        x: &mut [f32],
        wide: &mut Vec<f32>,
        inter: &mut Vec<f32>,
        q: &mut QuantizedRows,
    ) {
        let i = self.inter;
        wide.resize(t * 2 * i, 0.0);
        self.up.run(y, h, t, wide, 2 * i, false, Epilogue::None, q);
        inter.resize(t * i, 0.0);
        let act = self.act;
        inter
            .par_chunks_mut(i)
            .zip(wide.par_chunks(2 * i))
            .for_each(|(o, w)| {
                o.copy_from_slice(&w[..i]);
                act.apply(o);
                for (a, b) in o.iter_mut().zip(&w[i..]) {
                    *a *= b;
                }
            });
        self.down.run(inter, i, t, x, h, true, Epilogue::None, q);
    }
}

/// Activation buffers of the rotary models' forward pass.
#[derive(Default)]
pub struct RotaryWorkspace {
    /// Hidden states `[tokens x hidden]`.
    pub(crate) x: Vec<f32>,
    /// The normalised copy a sub-layer reads.
    pub(crate) y: Vec<f32>,
    pub(crate) qkv: Vec<f32>,
    pub(crate) ctx: Vec<f32>,
    wide: Vec<f32>,
    inter: Vec<f32>,
    pub(crate) q: QuantizedRows,
    /// Per layer: the keys and values of a batch's shared prefixes (decoders).
    pub(crate) prefix_kv: Vec<Vec<f32>>,
}

impl RotaryWorkspace {
    /// `x` = the embedding rows of `ids` (`table` is `[vocab x h]`).
    pub(crate) fn embed(&mut self, ids: &[u32], table: &[f32], h: usize) {
        self.x.resize(ids.len() * h, 0.0);
        for (r, &id) in ids.iter().enumerate() {
            self.x[r * h..(r + 1) * h].copy_from_slice(&table[id as usize * h..][..h]);
        }
    }

    /// `y` = `norm` applied to a copy of `x`.
    pub(crate) fn normed_copy(&mut self, norm: impl FnOnce(&mut [f32])) {
        self.y.clear();
        self.y.extend_from_slice(&self.x);
        norm(&mut self.y);
    }

    /// Pre-norm MLP block: `x += mlp(norm(x))` over `t` rows of width `h`.
    pub(crate) fn mlp_residual(
        &mut self,
        mlp: &GatedMlp,
        h: usize,
        t: usize,
        norm: impl FnOnce(&mut [f32]),
    ) {
        self.normed_copy(norm);
        mlp.run_residual(
            &self.y,
            h,
            t,
            &mut self.x,
            &mut self.wide,
            &mut self.inter,
            &mut self.q,
        );
    }
}

/// Tokens of the longest sequence of a packed batch.
pub fn longest(offsets: &[usize]) -> usize {
    offsets.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::{attention, Heads, Mask, PrefixKv};

    /// Softmax attention of one query row in f64, straight from the definition.
    fn naive(
        qkv: &[f32],
        heads: Heads,
        start: usize,
        len: usize,
        i: usize,
        h: usize,
        mask: Mask,
    ) -> Vec<f64> {
        let (d, ld) = (heads.d, heads.ld);
        let kvh = h / (heads.q_heads / heads.kv_heads);
        let q = &qkv[(start + i) * ld + heads.q_col + h * d..][..d];
        let visible = |j: usize| match mask {
            Mask::Full => true,
            Mask::Window(w) => i.abs_diff(j) <= w,
            Mask::Causal => j <= i,
        };
        let js: Vec<usize> = (0..len).filter(|&j| visible(j)).collect();
        let scores: Vec<f64> = js
            .iter()
            .map(|&j| {
                let k = &qkv[(start + j) * ld + heads.k_col + kvh * d..][..d];
                q.iter()
                    .zip(k)
                    .map(|(a, b)| *a as f64 * *b as f64)
                    .sum::<f64>()
                    / (d as f64).sqrt()
            })
            .collect();
        let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
        let z: f64 = e.iter().sum();
        let mut o = vec![0.0f64; d];
        for (&j, p) in js.iter().zip(&e) {
            let v = &qkv[(start + j) * ld + heads.v_col + kvh * d..][..d];
            for (oc, vc) in o.iter_mut().zip(v) {
                *oc += p / z * *vc as f64;
            }
        }
        o
    }

    /// 4 query heads on 2 key / value heads of width 16, packed q | k | v.
    fn gqa_heads() -> Heads {
        let (q_heads, kv_heads, d) = (4, 2, 16);
        Heads {
            q_heads,
            kv_heads,
            d,
            ld: (q_heads + 2 * kv_heads) * d,
            q_col: 0,
            k_col: q_heads * d,
            v_col: (q_heads + kv_heads) * d,
        }
    }

    /// `n` values in [-2, 2) from an xorshift generator.
    fn random(n: usize, mut state: u64) -> Vec<f32> {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 4.0
            })
            .collect()
    }

    #[test]
    fn tiled_attention_equals_the_definition_for_every_mask_across_tile_edges() {
        // Grouped-query heads (4 query heads on 2 key / value heads), sequences shorter than,
        // equal to and longer than one 64-row tile, packed end to end.
        let heads = gqa_heads();
        let (q_heads, d, ld) = (heads.q_heads, heads.d, heads.ld);
        let lens = [1usize, 5, 63, 64, 65, 130, 200];
        let mut offsets = vec![0];
        for l in lens {
            offsets.push(offsets.last().unwrap() + l);
        }
        let t = *offsets.last().unwrap();
        let qkv = random(t * ld, 0x9E37_79B9_7F4A_7C15);
        for mask in [Mask::Full, Mask::Window(20), Mask::Window(64), Mask::Causal] {
            let mut out = vec![f32::NAN; t * q_heads * d];
            attention(&offsets, &qkv, heads, mask, None, &mut out);
            let mut worst = 0.0f64;
            for (s, w) in offsets.windows(2).enumerate() {
                for i in 0..w[1] - w[0] {
                    for h in 0..q_heads {
                        let want = naive(&qkv, heads, w[0], w[1] - w[0], i, h, mask);
                        let got = &out[(w[0] + i) * q_heads * d + h * d..][..d];
                        for (g, e) in got.iter().zip(&want) {
                            assert!(g.is_finite(), "{mask:?} seq {s} row {i} head {h}");
                            worst = worst.max((*g as f64 - e).abs());
                        }
                    }
                }
            }
            assert!(worst < 1e-5, "{mask:?}: max |diff| {worst}");
        }
    }

    #[test]
    fn attention_after_a_cached_prefix_equals_the_whole_sequence() {
        // Each sequence cut into a prefix (its keys / values moved to another matrix, as the
        // decoder caches them) and a suffix run alone; the suffix rows must be the rows of the
        // whole sequence under the definition, across tile edges on both sides of the cut.
        let heads = gqa_heads();
        let (q_heads, kv_heads, d, ld) = (heads.q_heads, heads.kv_heads, heads.d, heads.ld);
        let (lens, cuts) = ([2usize, 70, 140, 90], [1usize, 64, 20, 0]);
        let total: usize = lens.iter().sum();
        let qkv = random(total * ld, 0x2545_F491_4F6C_DD1D);
        let kvw = 2 * kv_heads * d;
        let (mut cached, mut ranges, mut suffix, mut offsets) = (vec![], vec![], vec![], vec![0]);
        let mut start = 0;
        for (&len, &cut) in lens.iter().zip(&cuts) {
            ranges.push((cached.len() / kvw, cut));
            for r in start..start + cut {
                cached.extend_from_slice(&qkv[r * ld + heads.k_col..][..kvw]);
            }
            suffix.extend_from_slice(&qkv[(start + cut) * ld..(start + len) * ld]);
            offsets.push(offsets.last().unwrap() + len - cut);
            start += len;
        }
        let prefix = PrefixKv {
            rows: &cached,
            ld: kvw,
            k_col: 0,
            v_col: kv_heads * d,
            ranges: &ranges,
        };
        for mask in [Mask::Causal, Mask::Window(20), Mask::Full] {
            let mut out = vec![f32::NAN; offsets[lens.len()] * q_heads * d];
            attention(&offsets, &suffix, heads, mask, Some(prefix), &mut out);
            let (mut worst, mut start) = (0.0f64, 0);
            for (s, (&len, &cut)) in lens.iter().zip(&cuts).enumerate() {
                for i in cut..len {
                    for h in 0..q_heads {
                        let want = naive(&qkv, heads, start, len, i, h, mask);
                        let row = offsets[s] + i - cut;
                        let got = &out[row * q_heads * d + h * d..][..d];
                        for (g, e) in got.iter().zip(&want) {
                            assert!(g.is_finite(), "{mask:?} seq {s} row {i} head {h}");
                            worst = worst.max((*g as f64 - e).abs());
                        }
                    }
                }
                start += len;
            }
            assert!(worst < 1e-5, "{mask:?}: max |diff| {worst}");
        }
    }
}

//! C = A * B (+ bias) (+ C) with B packed once into panels of [`NR`] columns.
//!
//! Weights are constant, so every linear layer's matrix is packed at load time into column
//! panels that the micro-kernel streams contiguously: panel `p` holds, for each `k`, the
//! [`NR`] values `B[k][p*NR .. p*NR+NR]` (zero past `n`). The micro-kernel keeps an
//! `MR x NR` tile of C in registers (AVX-512: 12 x 32 = 24 zmm accumulators) and
//! broadcasts one element of A per row and `k`. Rows of C are split across threads.

use super::{isa, ops, Isa};
use rayon::prelude::*;

/// Columns per packed panel.
pub const NR: usize = 32;

/// A matrix `B` of shape `[k, n]` packed into column panels of [`NR`].
#[derive(Clone, Debug)]
pub struct PackedMatrix {
    k: usize,
    n: usize,
    data: Vec<f32>,
}

impl PackedMatrix {
    /// An empty packing, to be filled by [`PackedMatrix::pack_with`].
    pub fn new() -> Self {
        PackedMatrix {
            k: 0,
            n: 0,
            data: Vec::new(),
        }
    }

    /// Packs `B[k][j] = f(k, j)` for `k < k_dim`, `j < n`, reusing this buffer.
    pub fn pack_with(&mut self, k_dim: usize, n: usize, f: impl Fn(usize, usize) -> f32) {
        let panels = n.div_ceil(NR);
        self.k = k_dim;
        self.n = n;
        self.data.clear();
        self.data.resize(panels * k_dim * NR, 0.0);
        for p in 0..panels {
            let base = p * k_dim * NR;
            let cols = (n - p * NR).min(NR);
            for kk in 0..k_dim {
                let row = &mut self.data[base + kk * NR..base + kk * NR + cols];
                for (j, v) in row.iter_mut().enumerate() {
                    *v = f(kk, p * NR + j);
                }
            }
        }
    }

    /// Packs `B = S^T` where `S` has `rows` rows of `k_dim` contiguous values at stride `lds`
    /// (attention's K^T: one key per column).
    pub fn pack_transposed(&mut self, s: &[f32], lds: usize, rows: usize, k_dim: usize) {
        let panels = rows.div_ceil(NR);
        self.k = k_dim;
        self.n = rows;
        self.data.clear();
        self.data.resize(panels * k_dim * NR, 0.0);
        for j in 0..rows {
            let src = &s[j * lds..j * lds + k_dim];
            let base = (j / NR) * k_dim * NR + j % NR;
            for (c, &v) in src.iter().enumerate() {
                self.data[base + c * NR] = v;
            }
        }
    }

    /// Packs `B = S` where `S` has `k_dim` rows of `n` contiguous values at stride `lds`
    /// (attention's V).
    pub fn pack_rows(&mut self, s: &[f32], lds: usize, k_dim: usize, n: usize) {
        let panels = n.div_ceil(NR);
        self.k = k_dim;
        self.n = n;
        self.data.clear();
        self.data.resize(panels * k_dim * NR, 0.0);
        for p in 0..panels {
            let cols = (n - p * NR).min(NR);
            for kk in 0..k_dim {
                let dst = p * k_dim * NR + kk * NR;
                self.data[dst..dst + cols]
                    .copy_from_slice(&s[kk * lds + p * NR..kk * lds + p * NR + cols]);
            }
        }
    }

    /// Packs the transpose of a PyTorch `Linear` weight `w` of shape `[n, k]` (out x in), so
    /// that `x @ w^T` is `gemm(x, packed)`.
    pub fn from_linear_weight(w: &[f32], n: usize, k: usize) -> Self {
        let mut m = Self::new();
        m.pack_with(k, n, |kk, j| w[j * k + kk]);
        m
    }

    /// Inner dimension.
    pub fn k(&self) -> usize {
        self.k
    }
    /// Output columns.
    pub fn n(&self) -> usize {
        self.n
    }
    fn panel(&self, p: usize) -> &[f32] {
        &self.data[p * self.k * NR..(p + 1) * self.k * NR]
    }
}

impl Default for PackedMatrix {
    fn default() -> Self {
        Self::new()
    }
}

/// What happens to C after the product.
#[derive(Clone, Copy)]
pub enum Epilogue<'a> {
    /// Nothing.
    None,
    /// Exact GELU.
    Gelu,
    /// Tanh-approximated GELU.
    GeluTanh,
    /// ReLU.
    Relu,
    /// LayerNorm of each full row (use with `accumulate` for residual + LayerNorm).
    LayerNorm {
        /// Scale.
        gamma: &'a [f32],
        /// Shift.
        beta: &'a [f32],
        /// Epsilon.
        eps: f32,
    },
}

/// Arguments of one product.
pub struct Gemm<'a> {
    /// A, row-major with row stride `lda`, `m` rows of `b.k()` used columns.
    pub a: &'a [f32],
    /// Row stride of A.
    pub lda: usize,
    /// Rows of A and C.
    pub m: usize,
    /// Packed B.
    pub b: &'a PackedMatrix,
    /// Bias of length >= n, or none.
    pub bias: Option<&'a [f32]>,
    /// Add the product to what C holds (residual connections).
    pub accumulate: bool,
    /// Post-processing.
    pub epilogue: Epilogue<'a>,
}

/// Rows per parallel task.
const TASK_ROWS: usize = 96;

impl Gemm<'_> {
    /// Computes into `c` (row stride `ldc`; only columns `< n` are written), splitting rows
    /// across the current rayon pool when `parallel`.
    pub fn run(&self, c: &mut [f32], ldc: usize, parallel: bool) {
        let n = self.b.n();
        assert!(ldc >= n && self.lda >= self.b.k());
        assert!(self.m == 0 || c.len() >= (self.m - 1) * ldc + n);
        assert!(self.m == 0 || self.a.len() >= (self.m - 1) * self.lda + self.b.k());
        let isa = isa();
        for_row_blocks(self.m, c, ldc, parallel, |r0, rows, chunk| {
            self.rows(isa, r0, rows, chunk, ldc)
        });
    }

    /// Rows `r0 .. r0+rows` of C, with `c` starting at row `r0`.
    fn rows(&self, isa: Isa, r0: usize, rows: usize, c: &mut [f32], ldc: usize) {
        let n = self.b.n();
        let mr = match isa {
            Isa::Avx512 => 12,
            Isa::Avx2 => 6,
            Isa::Portable => 4,
        };
        for p in 0..n.div_ceil(NR) {
            let panel = self.b.panel(p);
            let cols = (n - p * NR).min(NR);
            let bias = self.bias.map(|b| &b[p * NR..p * NR + cols]);
            let mut i = 0;
            while i < rows {
                let h = (rows - i).min(mr);
                let a = &self.a[(r0 + i) * self.lda..];
                let cc = &mut c[i * ldc + p * NR..];
                let k = self.b.k();
                tile(
                    isa,
                    h,
                    k,
                    a,
                    self.lda,
                    panel,
                    cc,
                    ldc,
                    cols,
                    bias,
                    self.accumulate,
                );
                self.epilogue.tile(cc, ldc, h, cols);
                i += h;
            }
        }
        self.epilogue.rows(c, ldc, rows, n);
    }
}

/// Calls `f(first_row, rows, c_from_first_row)` on blocks of rows of C, in parallel on the
/// current rayon pool when `parallel` and worthwhile.
pub(crate) fn for_row_blocks(
    m: usize,
    c: &mut [f32],
    ldc: usize,
    parallel: bool,
    f: impl Fn(usize, usize, &mut [f32]) + Sync,
) {
    if m == 0 {
        return;
    }
    let threads = rayon::current_num_threads();
    if parallel && threads > 1 && m > 16 {
        // Enough tasks for balance, few enough to keep B panels hot.
        let per = m.div_ceil(threads * 4).clamp(16, TASK_ROWS).div_ceil(4) * 4;
        c.par_chunks_mut(per * ldc)
            .enumerate()
            .for_each(|(t, chunk)| {
                let r0 = t * per;
                if r0 < m {
                    f(r0, (m - r0).min(per), chunk);
                }
            });
    } else {
        f(0, m, c);
    }
}

impl Epilogue<'_> {
    /// The element-wise part, on an `h x cols` tile just written (still in L1).
    pub(crate) fn tile(&self, c: &mut [f32], ldc: usize, h: usize, cols: usize) {
        let f: fn(&mut [f32]) = match self {
            Epilogue::Gelu => ops::gelu,
            Epilogue::GeluTanh => ops::gelu_tanh,
            Epilogue::Relu => ops::relu,
            _ => return,
        };
        (0..h).for_each(|r| f(&mut c[r * ldc..r * ldc + cols]));
    }

    /// The row-wise part, once all columns of `rows` rows are written.
    pub(crate) fn rows(&self, c: &mut [f32], ldc: usize, rows: usize, n: usize) {
        if let Epilogue::LayerNorm { gamma, beta, eps } = *self {
            for r in 0..rows {
                ops::layer_norm(&mut c[r * ldc..r * ldc + n], gamma, beta, eps);
            }
        }
    }
}

/// One tile of at most `MR` rows and `cols <= NR` columns.
#[allow(clippy::too_many_arguments)]
#[inline]
fn tile(
    isa: Isa,
    h: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    c: &mut [f32],
    ldc: usize,
    cols: usize,
    bias: Option<&[f32]>,
    accumulate: bool,
) {
    debug_assert!(a.len() >= (h - 1) * lda + k && b.len() >= k * NR);
    debug_assert!(c.len() >= (h - 1) * ldc + cols);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX-512F (checked by `isa()`); the callers in this file pass a
        // tile inside `a`, `b`, `c` and `bias` (the debug assertions above check it in tests).
        Isa::Avx512 => unsafe {
            macro_rules! go {
                ($($n:literal)*) => {
                    match h {
                        $($n => avx512::tile::<$n>(k, a.as_ptr(), lda, b.as_ptr(), c.as_mut_ptr(), ldc, cols, bias, accumulate),)*
                        _ => unreachable!(),
                    }
                };
            }
            go!(1 2 3 4 5 6 7 8 9 10 11 12)
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and FMA present (checked by `isa()`); the callers in this file pass a
        // tile inside `a`, `b`, `c` and `bias` (the debug assertions above check it in tests).
        Isa::Avx2 => unsafe {
            macro_rules! go {
                ($($n:literal)*) => {
                    match h {
                        $($n => avx2::tile::<$n>(k, a.as_ptr(), lda, b.as_ptr(), c.as_mut_ptr(), ldc, cols, bias, accumulate),)*
                        _ => unreachable!(),
                    }
                };
            }
            go!(1 2 3 4 5 6)
        },
        _ => match h {
            1 => generic_tile::<1, false>(k, a, lda, b, c, ldc, cols, bias, accumulate),
            2 => generic_tile::<2, false>(k, a, lda, b, c, ldc, cols, bias, accumulate),
            3 => generic_tile::<3, false>(k, a, lda, b, c, ldc, cols, bias, accumulate),
            _ => generic_tile::<4, false>(k, a, lda, b, c, ldc, cols, bias, accumulate),
        },
    }
}

/// Portable tile; with `FMA` it uses fused multiply-add (only call it so where FMA exists).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn generic_tile<const MR: usize, const FMA: bool>(
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    c: &mut [f32],
    ldc: usize,
    cols: usize,
    bias: Option<&[f32]>,
    accumulate: bool,
) {
    let mut acc = [[0.0f32; NR]; MR];
    for (kk, bk) in b.chunks_exact(NR).take(k).enumerate() {
        for (i, row) in acc.iter_mut().enumerate() {
            let av = a[i * lda + kk];
            for (x, &bv) in row.iter_mut().zip(bk) {
                *x = if FMA {
                    av.mul_add(bv, *x)
                } else {
                    *x + av * bv
                };
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        let out = &mut c[i * ldc..i * ldc + cols];
        for (j, o) in out.iter_mut().enumerate() {
            let mut v = row[j];
            if let Some(bias) = bias {
                v += bias[j];
            }
            if accumulate {
                v += *o;
            }
            *o = v;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::NR;
    use std::arch::x86_64::*;

    /// Lanes `j < n` set (n clamped to 0..=8), for masked loads and stores.
    #[inline(always)]
    unsafe fn mask(n: usize) -> __m256i {
        let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        _mm256_cmpgt_epi32(_mm256_set1_epi32(n.min(8) as i32), lanes)
    }

    /// An `MR x 32` tile as two `MR x 16` halves, the Haswell-style register block: `2 * MR`
    /// (at most 12) accumulators, two B vectors and one broadcast of A fit the 16 ymm
    /// registers, so nothing spills and the FMA latency is hidden. C[i][j] (+)= sum_k
    /// A[i][k] * B[k][j] (+ bias[j]).
    ///
    /// # Safety
    /// AVX2 and FMA must be available; `a` must hold `MR` rows of `k` values at stride `lda`,
    /// `b` `k * 32` values, `c` `MR` rows of `cols` values at stride `ldc`, `bias` >= `cols`
    /// values.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile<const MR: usize>(
        k: usize,
        a: *const f32,
        lda: usize,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        cols: usize,
        bias: Option<&[f32]>,
        accumulate: bool,
    ) {
        for half in [0usize, 16] {
            if half >= cols {
                break;
            }
            let mut acc0 = [_mm256_setzero_ps(); MR];
            let mut acc1 = [_mm256_setzero_ps(); MR];
            let mut bp = b.add(half);
            let mut ap = a;
            for _ in 0..k {
                let b0 = _mm256_loadu_ps(bp);
                let b1 = _mm256_loadu_ps(bp.add(8));
                for i in 0..MR {
                    let av = _mm256_broadcast_ss(&*ap.add(i * lda));
                    acc0[i] = _mm256_fmadd_ps(av, b0, acc0[i]);
                    acc1[i] = _mm256_fmadd_ps(av, b1, acc1[i]);
                }
                bp = bp.add(NR);
                ap = ap.add(1);
            }
            let n = cols - half;
            let (m0, m1) = (mask(n), mask(n.saturating_sub(8)));
            let (bias0, bias1) = match bias {
                Some(bv) => (
                    // Masked-off lanes are not read (no fault), so the address may pass
                    // the end of a short bias: computed with wrapping arithmetic.
                    _mm256_maskload_ps(bv.as_ptr().wrapping_add(half), m0),
                    _mm256_maskload_ps(bv.as_ptr().wrapping_add(half + 8), m1),
                ),
                None => (_mm256_setzero_ps(), _mm256_setzero_ps()),
            };
            for i in 0..MR {
                let cp = c.wrapping_add(i * ldc + half);
                let mut v0 = _mm256_add_ps(acc0[i], bias0);
                let mut v1 = _mm256_add_ps(acc1[i], bias1);
                if accumulate {
                    v0 = _mm256_add_ps(v0, _mm256_maskload_ps(cp, m0));
                    v1 = _mm256_add_ps(v1, _mm256_maskload_ps(cp.wrapping_add(8), m1));
                }
                _mm256_maskstore_ps(cp, m0, v0);
                _mm256_maskstore_ps(cp.wrapping_add(8), m1, v1);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::NR;
    use std::arch::x86_64::*;

    /// An `MR x 32` tile: C[i][j] (+)= sum_k A[i][k] * B[k][j] (+ bias[j]).
    ///
    /// # Safety
    /// AVX-512F must be available; `a` must hold `MR` rows of `k` values at stride `lda`, `b`
    /// `k * 32` values, `c` `MR` rows of `cols` values at stride `ldc`, `bias` >= `cols` values.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn tile<const MR: usize>(
        k: usize,
        a: *const f32,
        lda: usize,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        cols: usize,
        bias: Option<&[f32]>,
        accumulate: bool,
    ) {
        let mut acc0 = [_mm512_setzero_ps(); MR];
        let mut acc1 = [_mm512_setzero_ps(); MR];
        let mut bp = b;
        let mut ap = a;
        for _ in 0..k {
            let b0 = _mm512_loadu_ps(bp);
            let b1 = _mm512_loadu_ps(bp.add(16));
            for i in 0..MR {
                let av = _mm512_set1_ps(*ap.add(i * lda));
                acc0[i] = _mm512_fmadd_ps(av, b0, acc0[i]);
                acc1[i] = _mm512_fmadd_ps(av, b1, acc1[i]);
            }
            bp = bp.add(NR);
            ap = ap.add(1);
        }
        let m0: __mmask16 = if cols >= 16 {
            0xffff
        } else {
            ((1u32 << cols) - 1) as u16
        };
        let m1: __mmask16 = if cols >= 32 {
            0xffff
        } else if cols > 16 {
            ((1u32 << (cols - 16)) - 1) as u16
        } else {
            0
        };
        let (bias0, bias1) = match bias {
            Some(bv) => (
                _mm512_maskz_loadu_ps(m0, bv.as_ptr()),
                _mm512_maskz_loadu_ps(m1, bv.as_ptr().add(16)),
            ),
            None => (_mm512_setzero_ps(), _mm512_setzero_ps()),
        };
        for i in 0..MR {
            let cp = c.add(i * ldc);
            let mut v0 = _mm512_add_ps(acc0[i], bias0);
            let mut v1 = _mm512_add_ps(acc1[i], bias1);
            if accumulate {
                v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, cp));
                v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, cp.add(16)));
            }
            _mm512_mask_storeu_ps(cp, m0, v0);
            _mm512_mask_storeu_ps(cp.add(16), m1, v1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], m: usize, k: usize, w: &[f32], n: usize, bias: &[f32]) -> Vec<f64> {
        let mut c = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = bias[j] as f64;
                for kk in 0..k {
                    s += a[i * k + kk] as f64 * w[j * k + kk] as f64;
                }
                c[i * n + j] = s;
            }
        }
        c
    }

    #[test]
    fn matches_naive_on_awkward_shapes() {
        for &(m, k, n) in &[
            (1, 1, 1),
            (13, 7, 33),
            (29, 64, 70),
            (100, 384, 96),
            (37, 600, 65),
            (7, 5, 31),
        ] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.1)
                .collect();
            let w: Vec<f32> = (0..n * k)
                .map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.07)
                .collect();
            let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.01).collect();
            let packed = PackedMatrix::from_linear_weight(&w, n, k);
            let want = naive(&a, m, k, &w, n, &bias);
            for parallel in [false, true] {
                // Guard columns beyond n must stay untouched.
                let ldc = n + 3;
                let mut c = vec![7.0f32; m * ldc];
                Gemm {
                    a: &a,
                    lda: k,
                    m,
                    b: &packed,
                    bias: Some(&bias),
                    accumulate: false,
                    epilogue: Epilogue::None,
                }
                .run(&mut c, ldc, parallel);
                for i in 0..m {
                    for j in 0..n {
                        let d = (c[i * ldc + j] as f64 - want[i * n + j]).abs();
                        assert!(
                            d < 1e-4,
                            "m{m} k{k} n{n} [{i},{j}] {} vs {}",
                            c[i * ldc + j],
                            want[i * n + j]
                        );
                    }
                    for j in n..ldc {
                        assert_eq!(c[i * ldc + j], 7.0);
                    }
                }
            }
        }
    }

    #[test]
    fn accumulate_adds_to_c() {
        let (m, k, n) = (5, 3, 4);
        let a = vec![1.0f32; m * k];
        let w = vec![2.0f32; n * k];
        let packed = PackedMatrix::from_linear_weight(&w, n, k);
        let mut c = vec![0.5f32; m * n];
        Gemm {
            a: &a,
            lda: k,
            m,
            b: &packed,
            bias: None,
            accumulate: true,
            epilogue: Epilogue::None,
        }
        .run(&mut c, n, false);
        assert!(c.iter().all(|&v| v == 6.5));
    }
    #[test]
    fn attention_packings_match_pack_with() {
        let (rows, k, ld) = (45, 8, 20);
        let s: Vec<f32> = (0..rows * ld).map(|i| i as f32).collect();
        let mut a = PackedMatrix::new();
        let mut b = PackedMatrix::new();
        a.pack_transposed(&s, ld, rows, k);
        b.pack_with(k, rows, |kk, j| s[j * ld + kk]);
        assert_eq!(a.data, b.data);
        a.pack_rows(&s, ld, rows, k);
        b.pack_with(rows, k, |kk, j| s[kk * ld + j]);
        assert_eq!(a.data, b.data);
    }
}

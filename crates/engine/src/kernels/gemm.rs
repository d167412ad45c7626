//! C = A * B (+ bias) (+ C) with B packed once into panels of [`NR`] columns.
//!
//! Weights are constant, so every linear layer's matrix is packed at load time into column
//! panels that the micro-kernel streams contiguously: panel `p` holds, for each `k`, the
//! [`NR`] values `B[k][p*NR .. p*NR+NR]` (zero past `n`). The micro-kernel keeps an
//! `MR x NR` tile of C in registers (AVX-512: 14 x 32 = 28 zmm accumulators) and
//! broadcasts one element of A per row and `k`. Rows of C are split across threads; each
//! thread blocks its rows along k (a B panel slice stays in L1) and copies its A slice into
//! micro-panels when the product is wide enough to repay the copy. Measured on Qwen3-0.6B's
//! shapes (`cargo bench --bench kernels -- qwen3`, 2 threads, Sapphire Rapids, both binaries
//! run alternately): 208-267 GFLOP/s with the unblocked 12 x 32 kernel, 252-302 with this.

use super::{isa, ops, Isa};
use rayon::prelude::*;
use std::cell::RefCell;

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
        self.pack_transposed_parts(&[(s, lds, rows)], k_dim)
    }

    /// [`Self::pack_transposed`] of the rows of several parts, one after another, each
    /// `(values, stride, rows)` (a decoder's cached prefix keys, then its own).
    pub fn pack_transposed_parts(&mut self, parts: &[(&[f32], usize, usize)], k_dim: usize) {
        let rows: usize = parts.iter().map(|p| p.2).sum();
        let panels = rows.div_ceil(NR);
        self.k = k_dim;
        self.n = rows;
        self.data.clear();
        self.data.resize(panels * k_dim * NR, 0.0);
        let mut j = 0;
        for &(s, lds, n) in parts {
            for r in 0..n {
                let src = &s[r * lds..r * lds + k_dim];
                let base = (j / NR) * k_dim * NR + j % NR;
                for (c, &v) in src.iter().enumerate() {
                    self.data[base + c * NR] = v;
                }
                j += 1;
            }
        }
    }

    /// Packs `B = S` where `S` has `k_dim` rows of `n` contiguous values at stride `lds`
    /// (attention's V).
    pub fn pack_rows(&mut self, s: &[f32], lds: usize, k_dim: usize, n: usize) {
        self.pack_rows_parts(&[(s, lds, k_dim)], n)
    }

    /// [`Self::pack_rows`] of the rows of several parts, one after another, each
    /// `(values, stride, rows)`.
    pub fn pack_rows_parts(&mut self, parts: &[(&[f32], usize, usize)], n: usize) {
        let k_dim: usize = parts.iter().map(|p| p.2).sum();
        let panels = n.div_ceil(NR);
        self.k = k_dim;
        self.n = n;
        self.data.clear();
        self.data.resize(panels * k_dim * NR, 0.0);
        for p in 0..panels {
            let cols = (n - p * NR).min(NR);
            let mut kk = 0;
            for &(s, lds, rows) in parts {
                for r in 0..rows {
                    let dst = p * k_dim * NR + kk * NR;
                    self.data[dst..dst + cols]
                        .copy_from_slice(&s[r * lds + p * NR..r * lds + p * NR + cols]);
                    kk += 1;
                }
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
        for_row_blocks(
            self.m,
            isa.gemm_rows(),
            c,
            ldc,
            parallel,
            |r0, rows, chunk| self.rows(isa, r0, rows, chunk, ldc),
        );
    }

    /// Rows `r0 .. r0+rows` of C, with `c` starting at row `r0`, the way GotoBLAS blocks a
    /// product: along k in blocks of at most [`KC`], so that the slice of a B panel that a row
    /// block's tiles share stays in L1; per k block, the rows' slice of A is copied into
    /// micro-panels of `MR` rows stored k-major (read contiguously by the micro-kernel, and
    /// kept in L2 while every B panel streams past it). C holds the running sums between k
    /// blocks; the bias and the epilogue come after the last.
    fn rows(&self, isa: Isa, r0: usize, rows: usize, c: &mut [f32], ldc: usize) {
        let (n, k) = (self.b.n(), self.b.k());
        let mr = isa.gemm_rows();
        let (kc, kblocks) = k_blocks(k);
        let mc = (MC / mr).max(1) * mr;
        // Copying A pays off once enough panels read it (not for attention's narrow products).
        let pack = n > PACK_MIN_COLS;
        PACKED_A.with(|cell| {
            let mut buf = cell.borrow_mut();
            let mut b0 = 0;
            while b0 < rows {
                let bh = (rows - b0).min(mc);
                let block = &mut c[b0 * ldc..];
                for kb in 0..kblocks {
                    let k0 = kb * kc;
                    let kk = (k - k0).min(kc);
                    let a = &self.a[(r0 + b0) * self.lda + k0..];
                    if pack {
                        pack_a(a, self.lda, bh, kk, mr, &mut buf);
                    }
                    let last = kb + 1 == kblocks;
                    for p in 0..n.div_ceil(NR) {
                        let panel = &self.b.panel(p)[k0 * NR..];
                        let cols = (n - p * NR).min(NR);
                        let sums = Sums {
                            load: kb > 0 || self.accumulate,
                            bias: if last {
                                self.bias.map(|b| &b[p * NR..p * NR + cols])
                            } else {
                                None
                            },
                        };
                        let mut i = 0;
                        while i < bh {
                            let h = (bh - i).min(mr);
                            let at = if pack {
                                TileA::Packed(&buf[i * kk..(i + h) * kk])
                            } else {
                                TileA::Rows(&a[i * self.lda..], self.lda)
                            };
                            let cc = &mut block[i * ldc + p * NR..];
                            tile(isa, h, kk, at, panel, cc, ldc, cols, sums);
                            if last {
                                self.epilogue.tile(cc, ldc, h, cols);
                            }
                            i += h;
                        }
                    }
                }
                b0 += bh;
            }
        });
        self.epilogue.rows(c, ldc, rows, n);
    }
}

thread_local! {
    /// Each thread's copy of the slice of A it is multiplying.
    static PACKED_A: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Products with more columns than this copy A into micro-panels first.
const PACK_MIN_COLS: usize = 16 * NR;

/// Most rows of A per block (their `KC` slice, 336 KiB at most, stays in L2).
const MC: usize = 336;

/// Most k per block: a B panel slice of `KC x NR` floats (32 KiB) stays in L1 while the tiles
/// of a row block pass over it.
const KC: usize = 256;

/// The k blocks of a product: (length of each but the last, count), as even as possible.
fn k_blocks(k: usize) -> (usize, usize) {
    let blocks = k.div_ceil(KC).max(1);
    (k.div_ceil(blocks).max(1), blocks)
}

/// Copies `rows` rows of `k` values of A (stride `lda`) into `buf` as micro-panels of `mr`
/// rows (the last one shorter): panel `t` starts at `t * mr * k` and holds, for each `k`, its
/// rows' values side by side.
fn pack_a(a: &[f32], lda: usize, rows: usize, k: usize, mr: usize, buf: &mut Vec<f32>) {
    assert!(mr <= 16, "micro-panels are at most 16 rows");
    buf.clear();
    buf.resize(rows * k, 0.0);
    let mut i = 0;
    while i < rows {
        let h = (rows - i).min(mr);
        let dst = &mut buf[i * k..(i + h) * k];
        let mut rows: [&[f32]; 16] = [&[]; 16];
        for (r, row) in rows.iter_mut().take(h).enumerate() {
            *row = &a[(i + r) * lda..(i + r) * lda + k];
        }
        for (kk, group) in dst.chunks_exact_mut(h).enumerate() {
            for (d, row) in group.iter_mut().zip(&rows[..h]) {
                *d = row[kk];
            }
        }
        i += h;
    }
}

/// Where a tile's rows of A are.
#[derive(Clone, Copy)]
enum TileA<'a> {
    /// A micro-panel (`k` groups of the tile's `h` values, see [`pack_a`]).
    Packed(&'a [f32]),
    /// The rows themselves, at this stride.
    Rows(&'a [f32], usize),
}

/// How a tile starts and ends: C (+)= A B, then + bias.
#[derive(Clone, Copy)]
struct Sums<'a> {
    /// Start from C's values (a previous k block's sums, or the residual when accumulating)
    /// instead of zero.
    load: bool,
    /// Added after the products (the last k block only).
    bias: Option<&'a [f32]>,
}

/// Calls `f(first_row, rows, c_from_first_row)` on blocks of rows of C, in parallel on the
/// current rayon pool when `parallel` and worthwhile.
pub(crate) fn for_row_blocks(
    m: usize,
    unit: usize,
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
        // Enough tasks for balance, few enough to keep B panels hot; whole register tiles.
        let per = m.div_ceil(threads * 4).clamp(16, TASK_ROWS).div_ceil(unit) * unit;
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

/// One tile of `h <= MR` rows and `cols <= NR` columns over `k` steps: C (+)= A B (+ bias);
/// `b` is the panel from this block's first step.
#[allow(clippy::too_many_arguments)]
#[inline]
fn tile(
    isa: Isa,
    h: usize,
    k: usize,
    a: TileA,
    b: &[f32],
    c: &mut [f32],
    ldc: usize,
    cols: usize,
    sums: Sums,
) {
    let (a, lda, packed) = match a {
        TileA::Packed(a) => (a, h, true),
        TileA::Rows(a, lda) => (a, lda, false),
    };
    let a_len = if packed { h * k } else { (h - 1) * lda + k };
    assert!(a.len() >= a_len && b.len() >= k * NR && cols <= NR);
    assert!(c.len() >= (h - 1) * ldc + cols && sums.bias.is_none_or(|b| b.len() >= cols));
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX-512F (checked by `isa()`); the slices hold what the kernel
        // reads and writes (asserted above).
        Isa::Avx512 => unsafe {
            macro_rules! go {
                ($($n:literal)*) => {
                    match (h, packed) {
                        $(($n, true) => avx512::tile::<$n, true>(k, a.as_ptr(), lda, b.as_ptr(), c.as_mut_ptr(), ldc, cols, sums),
                          ($n, false) => avx512::tile::<$n, false>(k, a.as_ptr(), lda, b.as_ptr(), c.as_mut_ptr(), ldc, cols, sums),)*
                        _ => unreachable!(),
                    }
                };
            }
            go!(1 2 3 4 5 6 7 8 9 10 11 12 13 14)
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and FMA present (checked by `isa()`); the slices hold what the kernel
        // reads and writes (asserted above).
        Isa::Avx2 => unsafe {
            macro_rules! go {
                ($($n:literal)*) => {
                    match (h, packed) {
                        $(($n, true) => avx2::tile::<$n, true>(k, a.as_ptr(), lda, b.as_ptr(), c.as_mut_ptr(), ldc, cols, sums),
                          ($n, false) => avx2::tile::<$n, false>(k, a.as_ptr(), lda, b.as_ptr(), c.as_mut_ptr(), ldc, cols, sums),)*
                        _ => unreachable!(),
                    }
                };
            }
            go!(1 2 3 4 5 6)
        },
        _ => match h {
            1 => generic_tile::<1>(k, a, lda, packed, b, c, ldc, cols, sums),
            2 => generic_tile::<2>(k, a, lda, packed, b, c, ldc, cols, sums),
            3 => generic_tile::<3>(k, a, lda, packed, b, c, ldc, cols, sums),
            _ => generic_tile::<4>(k, a, lda, packed, b, c, ldc, cols, sums),
        },
    }
}

/// Portable tile of `MR` rows of A, a packed micro-panel or rows at stride `lda`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn generic_tile<const MR: usize>(
    k: usize,
    a: &[f32],
    lda: usize,
    packed: bool,
    b: &[f32],
    c: &mut [f32],
    ldc: usize,
    cols: usize,
    sums: Sums,
) {
    let mut acc = [[0.0f32; NR]; MR];
    if sums.load {
        for (i, row) in acc.iter_mut().enumerate() {
            row[..cols].copy_from_slice(&c[i * ldc..i * ldc + cols]);
        }
    }
    for (kk, bk) in b.chunks_exact(NR).take(k).enumerate() {
        for (i, row) in acc.iter_mut().enumerate() {
            let av = if packed {
                a[kk * MR + i]
            } else {
                a[i * lda + kk]
            };
            for (x, &bv) in row.iter_mut().zip(bk) {
                *x += av * bv;
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        let out = &mut c[i * ldc..i * ldc + cols];
        for (j, o) in out.iter_mut().enumerate() {
            *o = row[j] + sums.bias.map_or(0.0, |b| b[j]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Sums, NR};
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
    /// AVX2 and FMA must be available; `a` must hold `k` groups of `MR` values (`PACKED`) or
    /// `MR` rows of `k` values at stride `lda`, `b` `k * 32` values, `c` `MR` rows of `cols`
    /// values at stride `ldc`, the bias >= `cols` values.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile<const MR: usize, const PACKED: bool>(
        k: usize,
        a: *const f32,
        lda: usize,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        cols: usize,
        sums: Sums,
    ) {
        for half in [0usize, 16] {
            if half >= cols {
                break;
            }
            let n = cols - half;
            let (m0, m1) = (mask(n), mask(n.saturating_sub(8)));
            let mut acc0 = [_mm256_setzero_ps(); MR];
            let mut acc1 = [_mm256_setzero_ps(); MR];
            // Masked-off lanes are neither read nor written (no fault), so addresses may pass
            // the end of C's row or a short bias: computed with wrapping arithmetic.
            if sums.load {
                for i in 0..MR {
                    let cp = c.wrapping_add(i * ldc + half);
                    acc0[i] = _mm256_maskload_ps(cp, m0);
                    acc1[i] = _mm256_maskload_ps(cp.wrapping_add(8), m1);
                }
            }
            let mut bp = b.add(half);
            let mut ap = a;
            for _ in 0..k {
                let b0 = _mm256_loadu_ps(bp);
                let b1 = _mm256_loadu_ps(bp.add(8));
                for i in 0..MR {
                    let av = _mm256_broadcast_ss(&*ap.add(if PACKED { i } else { i * lda }));
                    acc0[i] = _mm256_fmadd_ps(av, b0, acc0[i]);
                    acc1[i] = _mm256_fmadd_ps(av, b1, acc1[i]);
                }
                bp = bp.add(NR);
                ap = ap.add(if PACKED { MR } else { 1 });
            }
            let (bias0, bias1) = match sums.bias {
                Some(bv) => (
                    _mm256_maskload_ps(bv.as_ptr().wrapping_add(half), m0),
                    _mm256_maskload_ps(bv.as_ptr().wrapping_add(half + 8), m1),
                ),
                None => (_mm256_setzero_ps(), _mm256_setzero_ps()),
            };
            for i in 0..MR {
                let cp = c.wrapping_add(i * ldc + half);
                _mm256_maskstore_ps(cp, m0, _mm256_add_ps(acc0[i], bias0));
                _mm256_maskstore_ps(cp.wrapping_add(8), m1, _mm256_add_ps(acc1[i], bias1));
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Sums, NR};
    use std::arch::x86_64::*;

    /// An `MR x 32` tile: C[i][j] (+)= sum_k A[i][k] * B[k][j] (+ bias[j]). With `MR` = 14,
    /// 28 accumulators, two B vectors and one broadcast of A use 31 of the 32 zmm registers.
    ///
    /// # Safety
    /// AVX-512F must be available; `a` must hold `k` groups of `MR` values (`PACKED`) or `MR`
    /// rows of `k` values at stride `lda`, `b` `k * 32` values, `c` `MR` rows of `cols` values
    /// at stride `ldc`, the bias >= `cols` values.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn tile<const MR: usize, const PACKED: bool>(
        k: usize,
        a: *const f32,
        lda: usize,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        cols: usize,
        sums: Sums,
    ) {
        let (m0, m1): (__mmask16, __mmask16) = crate::kernels::half_masks(cols);
        let mut acc0 = [_mm512_setzero_ps(); MR];
        let mut acc1 = [_mm512_setzero_ps(); MR];
        // Masked-off lanes are neither read nor written (no fault), so addresses may pass the
        // end of C's row or a short bias: computed with wrapping arithmetic.
        if sums.load {
            for i in 0..MR {
                let cp = c.wrapping_add(i * ldc);
                acc0[i] = _mm512_maskz_loadu_ps(m0, cp);
                acc1[i] = _mm512_maskz_loadu_ps(m1, cp.wrapping_add(16));
            }
        }
        let mut bp = b;
        let mut ap = a;
        for _ in 0..k {
            let b0 = _mm512_loadu_ps(bp);
            let b1 = _mm512_loadu_ps(bp.add(16));
            for i in 0..MR {
                let av = _mm512_set1_ps(*ap.add(if PACKED { i } else { i * lda }));
                acc0[i] = _mm512_fmadd_ps(av, b0, acc0[i]);
                acc1[i] = _mm512_fmadd_ps(av, b1, acc1[i]);
            }
            bp = bp.add(NR);
            ap = ap.add(if PACKED { MR } else { 1 });
        }
        let (bias0, bias1) = match sums.bias {
            Some(bv) => (
                _mm512_maskz_loadu_ps(m0, bv.as_ptr()),
                _mm512_maskz_loadu_ps(m1, bv.as_ptr().wrapping_add(16)),
            ),
            None => (_mm512_setzero_ps(), _mm512_setzero_ps()),
        };
        for i in 0..MR {
            let cp = c.wrapping_add(i * ldc);
            _mm512_mask_storeu_ps(cp, m0, _mm512_add_ps(acc0[i], bias0));
            _mm512_mask_storeu_ps(cp.wrapping_add(16), m1, _mm512_add_ps(acc1[i], bias1));
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
        // Narrow products read A in place, wide ones (n > 512) copy it into micro-panels; k >
        // 256 is cut into blocks whose running sums wait in C; with `accumulate` C's values
        // are added.
        for &(m, k, n) in &[
            (1, 1, 1),
            (13, 7, 33),
            (29, 64, 70),
            (100, 384, 96),
            (37, 600, 65),
            (7, 5, 31),
            (45, 513, 530),
            (17, 256, 257),
            (30, 1030, 610),
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
                for accumulate in [false, true] {
                    // Guard columns beyond n must stay untouched.
                    let ldc = n + 3;
                    let start = |i: usize, j: usize| if j < n { (i + j) as f32 * 0.5 } else { 7.0 };
                    let mut c: Vec<f32> = (0..m * ldc).map(|x| start(x / ldc, x % ldc)).collect();
                    Gemm {
                        a: &a,
                        lda: k,
                        m,
                        b: &packed,
                        bias: Some(&bias),
                        accumulate,
                        epilogue: Epilogue::None,
                    }
                    .run(&mut c, ldc, parallel);
                    for i in 0..m {
                        for j in 0..n {
                            let base = if accumulate { start(i, j) as f64 } else { 0.0 };
                            let expect = want[i * n + j] + base;
                            let d = (c[i * ldc + j] as f64 - expect).abs();
                            assert!(
                                d < 1e-4 * expect.abs().max(1.0),
                                "m{m} k{k} n{n} acc {accumulate} [{i},{j}] {} vs {expect}",
                                c[i * ldc + j],
                            );
                        }
                        for j in n..ldc {
                            assert_eq!(c[i * ldc + j], 7.0);
                        }
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
        // The same rows in two parts, the second from another matrix with another stride.
        let (cut, ld2) = (13, 11);
        let t: Vec<f32> = (0..(rows - cut) * ld2)
            .map(|i| s[(cut + i / ld2) * ld + i % ld2])
            .collect();
        a.pack_transposed_parts(&[(&s, ld, cut), (&t, ld2, rows - cut)], k);
        b.pack_transposed(&s, ld, rows, k);
        assert_eq!(a.data, b.data);
        a.pack_rows_parts(&[(&s, ld, cut), (&t, ld2, rows - cut)], k);
        b.pack_rows(&s, ld, rows, k);
        assert_eq!(a.data, b.data);
    }
}

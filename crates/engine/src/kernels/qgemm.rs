//! Int8 GEMM: weights quantized per output channel (symmetric s8), activations quantized per
//! row at run time (u8 with zero point 128), products summed in i32 with AVX-512 VNNI
//! (`vpdpbusd`, 64 multiply-adds per instruction) and rescaled to f32 in the epilogue.
//!
//! `C[i][j] = sa[i] * sw[j] * (sum_k qa[i][k] * qw[k][j] - 128 * sum_k qw[k][j]) + bias[j]`.

use super::gemm::{for_row_blocks, Epilogue, NR};
use rayon::prelude::*;

/// A `[k, n]` weight matrix quantized per output column and packed in panels of [`NR`]
/// columns by groups of 4 `k` (the VNNI layout: for each group, 32 columns x 4 bytes).
#[derive(Clone, Debug)]
pub struct QuantizedMatrix {
    k: usize,
    kp: usize,
    n: usize,
    data: Vec<i8>,
    scales: Vec<f32>,
    colsum: Vec<i32>,
}

impl QuantizedMatrix {
    /// Quantizes a PyTorch `Linear` weight `w` of shape `[n, k]`.
    pub fn from_linear_weight(w: &[f32], n: usize, k: usize) -> Self {
        let kp = k.div_ceil(4) * 4;
        let panels = n.div_ceil(NR);
        let mut scales = vec![0.0f32; panels * NR];
        let mut colsum = vec![0i32; panels * NR];
        let mut data = vec![0i8; panels * kp * NR];
        for j in 0..n {
            let row = &w[j * k..(j + 1) * k];
            let max = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
            scales[j] = scale;
            let (p, jj) = (j / NR, j % NR);
            for (kk, &v) in row.iter().enumerate() {
                let q = (v / scale).round().clamp(-127.0, 127.0) as i8;
                colsum[j] += q as i32;
                data[p * kp * NR + (kk / 4) * NR * 4 + jj * 4 + kk % 4] = q;
            }
        }
        QuantizedMatrix {
            k,
            kp,
            n,
            data,
            scales,
            colsum,
        }
    }

    /// Inner dimension.
    pub fn k(&self) -> usize {
        self.k
    }
    /// Output columns.
    pub fn n(&self) -> usize {
        self.n
    }
    fn panel(&self, p: usize) -> &[i8] {
        &self.data[p * self.kp * NR..(p + 1) * self.kp * NR]
    }
}

/// Activations of a product, quantized per row: `x = scale * (q - 128)`.
#[derive(Default)]
pub struct QuantizedRows {
    kp: usize,
    data: Vec<u8>,
    scales: Vec<f32>,
}

impl QuantizedRows {
    /// Quantizes `m` rows of `k` values at stride `lda` (in parallel when `parallel`).
    pub fn quantize(&mut self, a: &[f32], lda: usize, m: usize, k: usize, parallel: bool) {
        let kp = k.div_ceil(4) * 4;
        self.kp = kp;
        self.data.clear();
        self.data.resize(m * kp, 128);
        self.scales.clear();
        self.scales.resize(m, 0.0);
        let one = |(i, (q, s)): (usize, (&mut [u8], &mut f32))| {
            *s = super::ops::quantize_row(&a[i * lda..i * lda + k], q);
        };
        if parallel && m > 64 {
            self.data
                .par_chunks_mut(kp)
                .zip(self.scales.par_iter_mut())
                .enumerate()
                .for_each(one);
        } else {
            self.data
                .chunks_mut(kp)
                .zip(self.scales.iter_mut())
                .enumerate()
                .for_each(one);
        }
    }
}

/// One int8 product `C = A W (+ bias) (+ C)` with A already quantized.
pub struct QGemm<'a> {
    /// Quantized activations (`m` rows).
    pub a: &'a QuantizedRows,
    /// Rows.
    pub m: usize,
    /// Quantized weights.
    pub b: &'a QuantizedMatrix,
    /// Bias of length >= n, or none.
    pub bias: Option<&'a [f32]>,
    /// Add the product to what C holds.
    pub accumulate: bool,
    /// Post-processing.
    pub epilogue: Epilogue<'a>,
}

impl QGemm<'_> {
    /// Computes into `c` (row stride `ldc`), splitting rows across the pool when `parallel`.
    pub fn run(&self, c: &mut [f32], ldc: usize, parallel: bool) {
        let n = self.b.n;
        assert!(ldc >= n && self.a.kp == self.b.kp && self.a.scales.len() >= self.m);
        assert!(self.m == 0 || c.len() >= (self.m - 1) * ldc + n);
        let vnni = vnni();
        for_row_blocks(self.m, 12, c, ldc, parallel, |r0, rows, chunk| {
            self.rows(vnni, r0, rows, chunk, ldc)
        });
    }

    fn rows(&self, vnni: bool, r0: usize, rows: usize, c: &mut [f32], ldc: usize) {
        let n = self.b.n;
        let kp = self.b.kp;
        let mut acc = [[0i32; NR]; 12];
        for p in 0..n.div_ceil(NR) {
            let panel = self.b.panel(p);
            let cols = (n - p * NR).min(NR);
            let dq = Dequant {
                col_scales: &self.b.scales[p * NR..p * NR + NR],
                colsum: &self.b.colsum[p * NR..p * NR + NR],
                bias: self.bias.map(|b| &b[p * NR..p * NR + cols]),
                accumulate: self.accumulate,
            };
            let mut i = 0;
            while i < rows {
                let h = (rows - i).min(12);
                let a = &self.a.data[(r0 + i) * kp..(r0 + i + h) * kp];
                let sa = &self.a.scales[r0 + i..r0 + i + h];
                let cc = &mut c[i * ldc + p * NR..];
                assert!(cc.len() >= (h - 1) * ldc + cols);
                #[cfg(target_arch = "x86_64")]
                if vnni {
                    // SAFETY: VNNI checked by `vnni()`; `a`, `panel`, `cc` bounds asserted.
                    unsafe { vnni_tile_f32(h, kp, a, panel, cc, ldc, cols, sa, &dq) };
                    self.epilogue.tile(cc, ldc, h, cols);
                    i += h;
                    continue;
                }
                portable_int_tile(h, kp, a, panel, &mut acc);
                dq.store(&acc, h, sa, cc, ldc, cols);
                self.epilogue.tile(cc, ldc, h, cols);
                i += h;
            }
        }
        self.epilogue.rows(c, ldc, rows, n);
    }
}

/// What turns i32 sums of one panel into f32 outputs.
struct Dequant<'a> {
    col_scales: &'a [f32],
    colsum: &'a [i32],
    bias: Option<&'a [f32]>,
    accumulate: bool,
}

impl Dequant<'_> {
    /// Scalar dequantisation of an `h x cols` tile.
    #[allow(clippy::too_many_arguments)]
    fn store(
        &self,
        acc: &[[i32; NR]; 12],
        h: usize,
        sa: &[f32],
        c: &mut [f32],
        ldc: usize,
        cols: usize,
    ) {
        for (r, acc_row) in acc.iter().enumerate().take(h) {
            let out = &mut c[r * ldc..r * ldc + cols];
            for (j, o) in out.iter_mut().enumerate() {
                let dot = acc_row[j] - 128 * self.colsum[j];
                let mut v = dot as f32 * sa[r] * self.col_scales[j];
                if let Some(b) = self.bias {
                    v += b[j];
                }
                if self.accumulate {
                    v += *o;
                }
                *o = v;
            }
        }
    }
}

/// Whether the CPU has AVX-512 VNNI (and the kernels are not forced to a lower level).
pub fn vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        super::isa() == super::Isa::Avx512
            && is_x86_feature_detected!("avx512vnni")
            && is_x86_feature_detected!("avx512bw")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `acc[r][j] = sum_k a[r][k] * panel[k][j]` for `h` rows (the kernels without the
/// dequantising epilogue, for tests).
#[cfg(test)]
fn int_tile(vnni: bool, h: usize, kp: usize, a: &[u8], panel: &[i8], acc: &mut [[i32; NR]; 12]) {
    assert!(a.len() >= h * kp && panel.len() >= kp * NR);
    #[cfg(target_arch = "x86_64")]
    if vnni {
        // SAFETY: VNNI checked by `vnni()`; bounds asserted above.
        unsafe {
            macro_rules! go {
                ($($n:literal)*) => {
                    match h {
                        $($n => vnni_tile::<$n>(kp, a.as_ptr(), panel.as_ptr(), acc),)*
                        _ => unreachable!(),
                    }
                };
            }
            go!(1 2 3 4 5 6 7 8 9 10 11 12);
        }
        return;
    }
    let _ = vnni;
    portable_int_tile(h, kp, a, panel, acc);
}

super::multiversion! {
    /// Portable integer tile (any CPU).
    pub fn portable_int_tile(h: usize, kp: usize, a: &[u8], panel: &[i8], acc: &mut [[i32; NR]; 12]) {
        for (r, row) in acc.iter_mut().enumerate().take(h) {
            row.fill(0);
            let ar = &a[r * kp..(r + 1) * kp];
            for (g, bg) in panel.chunks_exact(NR * 4).take(kp / 4).enumerate() {
                let av = &ar[g * 4..g * 4 + 4];
                for (j, x) in row.iter_mut().enumerate() {
                    let bj = &bg[j * 4..j * 4 + 4];
                    *x += av[0] as i32 * bj[0] as i32
                        + av[1] as i32 * bj[1] as i32
                        + av[2] as i32 * bj[2] as i32
                        + av[3] as i32 * bj[3] as i32;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
macro_rules! vnni_body {
    ($mr:expr, $kp:expr, $a:expr, $b:expr) => {{
        use std::arch::x86_64::*;
        let mut acc0 = [_mm512_setzero_si512(); $mr];
        let mut acc1 = [_mm512_setzero_si512(); $mr];
        let mut bp = $b;
        for g in 0..$kp / 4 {
            let b0 = _mm512_loadu_si512(bp as *const _);
            let b1 = _mm512_loadu_si512(bp.add(64) as *const _);
            for i in 0..$mr {
                let av =
                    _mm512_set1_epi32(($a.add(i * $kp + g * 4) as *const i32).read_unaligned());
                acc0[i] = _mm512_dpbusd_epi32(acc0[i], av, b0);
                acc1[i] = _mm512_dpbusd_epi32(acc1[i], av, b1);
            }
            bp = bp.add(NR * 4);
        }
        (acc0, acc1)
    }};
}

/// # Safety
/// The CPU must support AVX-512F/BW/VNNI; `a` must hold `MR * kp` bytes and `b` `kp * 32`.
#[cfg(all(test, target_arch = "x86_64"))]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn vnni_tile<const MR: usize>(
    kp: usize,
    a: *const u8,
    b: *const i8,
    acc: &mut [[i32; NR]; 12],
) {
    use std::arch::x86_64::*;
    let (acc0, acc1) = vnni_body!(MR, kp, a, b);
    for i in 0..MR {
        _mm512_storeu_si512(acc[i].as_mut_ptr() as *mut _, acc0[i]);
        _mm512_storeu_si512(acc[i].as_mut_ptr().add(16) as *mut _, acc1[i]);
    }
}

/// VNNI tile with the dequantisation epilogue in registers.
///
/// # Safety
/// The CPU must support AVX-512F/BW/VNNI; `a` must hold `h * kp` bytes, `panel` `kp * 32`,
/// `c` `h` rows of `cols <= 32` values at stride `ldc`, `sa` `h` scales.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
unsafe fn vnni_tile_f32(
    h: usize,
    kp: usize,
    a: &[u8],
    panel: &[i8],
    c: &mut [f32],
    ldc: usize,
    cols: usize,
    sa: &[f32],
    dq: &Dequant,
) {
    macro_rules! go {
        ($($n:literal)*) => {
            match h {
                $($n => vnni_tile_f32_mr::<$n>(kp, a.as_ptr(), panel.as_ptr(), c.as_mut_ptr(), ldc, cols, sa.as_ptr(), dq),)*
                _ => unreachable!(),
            }
        };
    }
    go!(1 2 3 4 5 6 7 8 9 10 11 12)
}

/// # Safety
/// As [`vnni_tile_f32`], with `h == MR`.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn vnni_tile_f32_mr<const MR: usize>(
    kp: usize,
    a: *const u8,
    b: *const i8,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    sa: *const f32,
    dq: &Dequant,
) {
    use std::arch::x86_64::*;
    let (acc0, acc1) = vnni_body!(MR, kp, a, b);
    let (m0, m1): (__mmask16, __mmask16) = crate::kernels::half_masks(cols);
    let k128 = _mm512_set1_epi32(128);
    let zp0 = _mm512_mullo_epi32(k128, _mm512_loadu_si512(dq.colsum.as_ptr() as *const _));
    let zp1 = _mm512_mullo_epi32(
        k128,
        _mm512_loadu_si512(dq.colsum.as_ptr().add(16) as *const _),
    );
    let sw0 = _mm512_loadu_ps(dq.col_scales.as_ptr());
    let sw1 = _mm512_loadu_ps(dq.col_scales.as_ptr().add(16));
    let (bias0, bias1) = match dq.bias {
        Some(bv) => (
            _mm512_maskz_loadu_ps(m0, bv.as_ptr()),
            _mm512_maskz_loadu_ps(m1, bv.as_ptr().add(16)),
        ),
        None => (_mm512_setzero_ps(), _mm512_setzero_ps()),
    };
    for i in 0..MR {
        let s = _mm512_set1_ps(*sa.add(i));
        let cp = c.add(i * ldc);
        let f0 = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc0[i], zp0));
        let f1 = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc1[i], zp1));
        let mut v0 = _mm512_fmadd_ps(_mm512_mul_ps(f0, s), sw0, bias0);
        let mut v1 = _mm512_fmadd_ps(_mm512_mul_ps(f1, s), sw1, bias1);
        if dq.accumulate {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, cp));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, cp.add(16)));
        }
        _mm512_mask_storeu_ps(cp, m0, v0);
        _mm512_mask_storeu_ps(cp.add(16), m1, v1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_product_is_close_to_f32() {
        let (m, k, n) = (29, 70, 45);
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.1)
            .collect();
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.07)
            .collect();
        let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.01).collect();
        let q = QuantizedMatrix::from_linear_weight(&w, n, k);
        let mut qa = QuantizedRows::default();
        qa.quantize(&a, k, m, k, true);
        for parallel in [false, true] {
            let mut c = vec![0.0f32; m * n];
            QGemm {
                a: &qa,
                m,
                b: &q,
                bias: Some(&bias),
                accumulate: false,
                epilogue: Epilogue::None,
            }
            .run(&mut c, n, parallel);
            for i in 0..m {
                for j in 0..n {
                    let want: f32 =
                        bias[j] + (0..k).map(|kk| a[i * k + kk] * w[j * k + kk]).sum::<f32>();
                    let scale: f32 = (0..k)
                        .map(|kk| (a[i * k + kk] * w[j * k + kk]).abs())
                        .sum::<f32>();
                    assert!(
                        (c[i * n + j] - want).abs() <= 0.02 * scale + 1e-4,
                        "[{i},{j}] {} vs {want}",
                        c[i * n + j]
                    );
                }
            }
        }
    }

    fn tile_inputs(kp: usize) -> (Vec<u8>, Vec<i8>) {
        let a: Vec<u8> = (0..12 * kp).map(|i| (i * 37 % 256) as u8).collect();
        let b: Vec<i8> = (0..kp * NR)
            .map(|i| ((i * 53 % 255) as i32 - 127) as i8)
            .collect();
        (a, b)
    }

    #[test]
    fn portable_tile_matches_the_definition() {
        let kp = 96;
        let (a, b) = tile_inputs(kp);
        let mut x = [[0i32; NR]; 12];
        portable_int_tile(12, kp, &a, &b, &mut x);
        for r in 0..12 {
            for j in 0..NR {
                let want: i32 = (0..kp)
                    .map(|k| a[r * kp + k] as i32 * b[(k / 4) * NR * 4 + j * 4 + k % 4] as i32)
                    .sum();
                assert_eq!(x[r][j], want);
            }
        }
    }

    #[test]
    fn vnni_tile_matches_the_portable_tile() {
        if !vnni() {
            // Written past the test harness's capture so that the skip shows in the log.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED vnni_tile_matches_the_portable_tile: this CPU has no AVX-512 VNNI"
            );
            return;
        }
        let kp = 96;
        let (a, b) = tile_inputs(kp);
        let mut x = [[0i32; NR]; 12];
        let mut y = [[0i32; NR]; 12];
        portable_int_tile(12, kp, &a, &b, &mut x);
        int_tile(true, 12, kp, &a, &b, &mut y);
        assert_eq!(x, y);
    }
}

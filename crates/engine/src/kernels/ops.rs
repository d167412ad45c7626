//! Element-wise and row-wise operations: exp, erf, GELU, softmax, LayerNorm.
//!
//! The scalar functions are branch-free polynomial approximations accurate to a few ulp, so
//! that loops over slices vectorise.

use super::multiversion;

/// exp(x) for f32, branch-free (Cephes range reduction + degree-6 polynomial), ~1 ulp.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.7);
    let n = (x * std::f32::consts::LOG2_E).round_ties_even();
    // Two-part ln2 for an exact reduction.
    let r = x - n * 0.693_359_4;
    let r = r + n * 2.121_944_4e-4;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_6e-1;
    p = p * r + 5e-1;
    let y = p * r * r + r + 1.0;
    // SAFETY: n is finite and within [-126, 128] after the clamp above, so the conversion is
    // exact (and, unlike `as`, vectorises without saturation checks).
    let ni: i32 = unsafe { n.to_int_unchecked() };
    let bits = ((ni + 127) as u32) << 23;
    y * f32::from_bits(bits)
}

/// erf(x) for f32: the rational approximation used by XLA / Eigen, clamped to [-4, 4].
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 - 2.101_024e-6;
    p = p * x2 - 5.692_506_4e-5;
    p = p * x2 - 7.349_906_3e-4;
    p = p * x2 - 2.954_6e-3;
    p = p * x2 - 1.609_603_3e-2;
    p *= x;
    let mut q = -1.456_607_2e-5_f32;
    q = q * x2 - 2.133_740_6e-4;
    q = q * x2 - 1.682_827e-3;
    q = q * x2 - 7.373_329_3e-3;
    q = q * x2 - 1.426_474e-2;
    p / q
}

/// tanh(x) for f32 through exp, branch-free.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let x = x.clamp(-9.0, 9.0);
    let e = exp(2.0 * x);
    (e - 1.0) / (e + 1.0)
}

/// Exact (erf) GELU of one value.
#[inline(always)]
pub fn gelu_scalar(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

multiversion! {
    /// In place: x = 0.5 x (1 + erf(x / sqrt 2)).
    pub fn gelu(x: &mut [f32]) {
        for v in x.iter_mut() {
            *v = gelu_scalar(*v);
        }
    }
}

multiversion! {
    /// In place: x = x / (1 + exp(-x)) (SiLU, the gate of SwiGLU).
    pub fn silu(x: &mut [f32]) {
        for v in x.iter_mut() {
            *v /= 1.0 + exp(-*v);
        }
    }
}

multiversion! {
    /// In place: the tanh approximation of GELU.
    pub fn gelu_tanh(x: &mut [f32]) {
        for v in x.iter_mut() {
            let u = *v;
            *v = 0.5 * u * (1.0 + tanh(0.797_884_6 * (u + 0.044_715 * u * u * u)));
        }
    }
}

multiversion! {
    /// In place: max(x, 0).
    pub fn relu(x: &mut [f32]) {
        for v in x.iter_mut() {
            *v = v.max(0.0);
        }
    }
}

multiversion! {
    /// In place: softmax(scale * x) over the row (scale > 0).
    pub fn softmax(x: &mut [f32], scale: f32) {
        // Lane-wise partial max and sum so that both reductions vectorise.
        let mut lanes = [f32::NEG_INFINITY; 16];
        let mut chunks = x.chunks_exact(16);
        for c in &mut chunks {
            for i in 0..16 {
                lanes[i] = lanes[i].max(c[i]);
            }
        }
        let mut m = chunks.remainder().iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        for l in lanes {
            m = m.max(l);
        }
        for v in x.iter_mut() {
            *v = exp((*v - m) * scale);
        }
        let mut sums = [0.0f32; 16];
        let mut chunks = x.chunks_exact(16);
        for c in &mut chunks {
            for i in 0..16 {
                sums[i] += c[i];
            }
        }
        let sum = sums.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>();
        let inv = 1.0 / sum;
        for v in x.iter_mut() {
            *v *= inv;
        }
    }
}

multiversion! {
    /// In place: x = LayerNorm(x) * gamma + beta over one row.
    pub fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
        let n = x.len() as f32;
        // Eight partial sums vectorise without changing the result beyond rounding.
        let mut s = [0.0f32; 16];
        let chunks = x.chunks_exact(16);
        let rest = chunks.remainder();
        for c in chunks {
            for i in 0..16 {
                s[i] += c[i];
            }
        }
        let mut mean = s.iter().sum::<f32>() + rest.iter().sum::<f32>();
        mean /= n;
        let mut q = [0.0f32; 16];
        let chunks = x.chunks_exact(16);
        let rest = chunks.remainder();
        for c in chunks {
            for i in 0..16 {
                let d = c[i] - mean;
                q[i] += d * d;
            }
        }
        let var = (q.iter().sum::<f32>() + rest.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>()) / n;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, g), b) in x.iter_mut().zip(gamma).zip(beta) {
            *v = (*v - mean) * inv * g + b;
        }
    }
}

/// max |x| over a slice.
pub fn max_abs(x: &[f32]) -> f32 {
    max_abs_mv(x)
}

fn max_abs_mv(x: &[f32]) -> f32 {
    let mut out = 0.0f32;
    max_abs_into(x, &mut out);
    out
}

multiversion! {
    fn max_abs_into(x: &[f32], out: &mut f32) {
        let mut m = [0.0f32; 16];
        let chunks = x.chunks_exact(16);
        let rest = chunks.remainder();
        for c in chunks {
            for i in 0..16 {
                m[i] = m[i].max(c[i].abs());
            }
        }
        let mut r = m.iter().fold(0.0f32, |a, &b| a.max(b));
        for v in rest {
            r = r.max(v.abs());
        }
        *out = r;
    }
}

multiversion! {
    /// q = clamp(round(x * inv_scale) + 128, 0, 255).
    pub fn quantize_u8(x: &[f32], inv_scale: f32, q: &mut [u8]) {
        for (o, &v) in q.iter_mut().zip(x) {
            *o = ((v * inv_scale).round_ties_even() + 128.0).clamp(0.0, 255.0) as u8;
        }
    }
}

/// Quantizes one row to u8 with zero point 128 and returns its scale (max|x| / 127).
pub fn quantize_row(x: &[f32], q: &mut [u8]) -> f32 {
    assert!(q.len() >= x.len());
    #[cfg(target_arch = "x86_64")]
    if super::isa() == super::Isa::Avx512 && is_x86_feature_detected!("avx512bw") {
        // SAFETY: AVX-512F/BW present; `q` holds at least `x.len()` bytes (asserted).
        return unsafe { quantize_row_avx512(x, q) };
    }
    let max = max_abs(x);
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    quantize_u8(x, 1.0 / scale, &mut q[..x.len()]);
    scale
}

/// # Safety
/// The CPU must support AVX-512F and AVX-512BW, and `q.len() >= x.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn quantize_row_avx512(x: &[f32], q: &mut [u8]) -> f32 {
    use std::arch::x86_64::*;
    let n = x.len();
    let full = n / 16 * 16;
    let mut m = _mm512_setzero_ps();
    let mut i = 0;
    while i < full {
        m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(x.as_ptr().add(i))));
        i += 16;
    }
    let mut max = _mm512_reduce_max_ps(m);
    for v in &x[full..] {
        max = max.max(v.abs());
    }
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    let inv = _mm512_set1_ps(1.0 / scale);
    let zp = _mm512_set1_epi32(128);
    let mut i = 0;
    while i < full {
        // cvtps rounds to nearest even; |x * inv| <= 127, so q in [1, 255].
        let r = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x.as_ptr().add(i)), inv));
        let b = _mm512_cvtusepi32_epi8(_mm512_add_epi32(r, zp));
        _mm_storeu_si128(q.as_mut_ptr().add(i) as *mut __m128i, b);
        i += 16;
    }
    for (o, &v) in q[full..n].iter_mut().zip(&x[full..]) {
        *o = ((v / scale).round_ties_even() + 128.0).clamp(0.0, 255.0) as u8;
    }
    scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std() {
        let mut worst = 0.0f32;
        let mut x = -80.0f32;
        while x < 80.0 {
            let rel = ((exp(x) - x.exp()) / x.exp()).abs();
            worst = worst.max(rel);
            x += 0.0137;
        }
        assert!(worst < 4e-7, "max relative error {worst}");
    }

    #[test]
    fn silu_matches_its_definition() {
        let xs: Vec<f32> = (-4000..4000).map(|i| i as f32 * 0.0237).collect();
        let mut ys = xs.clone();
        silu(&mut ys);
        for (x, y) in xs.iter().zip(&ys) {
            let want = *x as f64 / (1.0 + (-*x as f64).exp());
            assert!(
                (*y as f64 - want).abs() <= 1e-6 * want.abs().max(1e-3),
                "silu({x}) = {y}, want {want}"
            );
        }
    }

    #[test]
    fn erf_matches_libm() {
        let mut worst = 0.0f64;
        let mut x = -6.0f64;
        while x < 6.0 {
            let d = (erf(x as f32) as f64 - libm::erf(x)).abs();
            worst = worst.max(d);
            x += 0.00071;
        }
        assert!(worst < 5e-7, "max abs error {worst}");
    }

    #[test]
    fn softmax_sums_to_one_and_matches_naive() {
        let mut row: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin() * 5.0).collect();
        let naive: Vec<f64> = {
            let m = row.iter().cloned().fold(f32::MIN, f32::max) as f64;
            let e: Vec<f64> = row.iter().map(|&v| ((v as f64 - m) * 0.5).exp()).collect();
            let s: f64 = e.iter().sum();
            e.iter().map(|v| v / s).collect()
        };
        softmax(&mut row, 0.5);
        for (a, b) in row.iter().zip(&naive) {
            assert!((*a as f64 - b).abs() < 1e-6);
        }
    }

    #[test]
    fn layer_norm_matches_naive() {
        let mut row: Vec<f32> = (0..40)
            .map(|i| (i as f32 * 1.3).cos() * 3.0 + 1.0)
            .collect();
        let g: Vec<f32> = (0..40).map(|i| 1.0 + i as f32 * 0.01).collect();
        let b: Vec<f32> = (0..40).map(|i| i as f32 * -0.02).collect();
        let x: Vec<f64> = row.iter().map(|&v| v as f64).collect();
        let mean = x.iter().sum::<f64>() / 40.0;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 40.0;
        layer_norm(&mut row, &g, &b, 1e-12);
        for i in 0..40 {
            let want = (x[i] - mean) / var.sqrt() * g[i] as f64 + b[i] as f64;
            assert!(
                (row[i] as f64 - want).abs() < 1e-5,
                "{i}: {} vs {want}",
                row[i]
            );
        }
    }
}

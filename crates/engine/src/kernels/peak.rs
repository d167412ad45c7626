//! A measurement of this core's FP32 FMA throughput, so that efficiency is reported against
//! what the silicon does at its current clock rather than a nominal one.

use super::{isa, Isa};
use std::time::Instant;

/// FP32 FLOP per cycle per core of the kernels' instruction set with two FMA pipes.
pub fn nominal_flop_per_cycle() -> f64 {
    match isa() {
        Isa::Avx512 => 64.0,
        Isa::Avx2 => 32.0,
        Isa::Portable => 16.0,
    }
}

/// Measured single-thread FP32 GFLOP/s of independent FMA chains (about 0.1 s).
pub fn measured_peak_gflops() -> f64 {
    let mut best = 0.0f64;
    for _ in 0..5 {
        let iters = 2_000_000u64;
        let t = Instant::now();
        let flop = fma_loop(iters);
        let s = t.elapsed().as_secs_f64();
        best = best.max(flop / s / 1e9);
    }
    best
}

fn fma_loop(iters: u64) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if isa() == Isa::Avx512 {
        // SAFETY: AVX-512F present.
        unsafe { return avx512_loop(iters) };
    }
    #[cfg(target_arch = "x86_64")]
    if isa() == Isa::Avx2 {
        // SAFETY: AVX2 and FMA present.
        unsafe { return avx2_loop(iters) };
    }
    let mut acc = [[1.0f32; 8]; 12];
    let m = std::hint::black_box(0.999_999f32);
    let a = std::hint::black_box(1e-7f32);
    for _ in 0..iters {
        for row in acc.iter_mut() {
            for v in row.iter_mut() {
                *v = *v * m + a;
            }
        }
    }
    std::hint::black_box(&acc);
    (iters * 12 * 8 * 2) as f64
}

/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512_loop(iters: u64) -> f64 {
    use std::arch::x86_64::*;
    let m = _mm512_set1_ps(std::hint::black_box(0.999_999));
    let a = _mm512_set1_ps(std::hint::black_box(1e-7));
    let mut acc = [_mm512_set1_ps(1.0); 12];
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm512_fmadd_ps(*v, m, a);
        }
    }
    std::hint::black_box(&acc);
    (iters * 12 * 16 * 2) as f64
}

/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_loop(iters: u64) -> f64 {
    use std::arch::x86_64::*;
    let m = _mm256_set1_ps(std::hint::black_box(0.999_999));
    let a = _mm256_set1_ps(std::hint::black_box(1e-7));
    let mut acc = [_mm256_set1_ps(1.0); 12];
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm256_fmadd_ps(*v, m, a);
        }
    }
    std::hint::black_box(&acc);
    (iters * 12 * 8 * 2) as f64
}

//! Numeric kernels: a packed-weight GEMM and the element-wise operations of a transformer, each
//! compiled for AVX-512, AVX2+FMA and portable x86-64/other targets and chosen at run time.

pub mod gemm;
pub mod ops;
pub mod peak;
pub mod qgemm;

use std::sync::OnceLock;

/// The instruction set the kernels run with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512F (512-bit FMA).
    Avx512,
    /// AVX2 with FMA.
    Avx2,
    /// Whatever the baseline target offers (SSE2 on x86-64).
    Portable,
}

impl Isa {
    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Portable => "portable",
        }
    }

    /// Rows of the fp32 GEMM's register tile (its micro-panels of A).
    pub(crate) fn gemm_rows(self) -> usize {
        match self {
            Isa::Avx512 => 14,
            Isa::Avx2 => 6,
            Isa::Portable => 4,
        }
    }
}

fn detect() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        let forced = std::env::var("CROSSRANK_ISA").ok();
        let avx512 = is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma");
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        match forced.as_deref() {
            Some("portable") => return Isa::Portable,
            Some("avx2") if avx2 => return Isa::Avx2,
            _ => {}
        }
        if avx512 {
            return Isa::Avx512;
        }
        if avx2 {
            return Isa::Avx2;
        }
    }
    Isa::Portable
}

/// The instruction set detected on this CPU (overridable downwards with `CROSSRANK_ISA=avx2|portable`).
pub fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(detect)
}

/// AVX-512 lane masks of the two 16-column halves of a 32-column panel tile with `cols` valid
/// columns.
pub(crate) fn half_masks(cols: usize) -> (u16, u16) {
    let lanes = |n: usize| {
        if n >= 16 {
            0xffff
        } else {
            ((1u32 << n) - 1) as u16
        }
    };
    (lanes(cols), lanes(cols.saturating_sub(16)))
}

/// Generates `pub fn $name(args)` that runs the body compiled for the best available instruction
/// set. The body must be plain Rust written so that LLVM can vectorise it.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn generic($($arg: $ty),*) $body
            /// # Safety
            /// The CPU must support AVX-512F, AVX2 and FMA (the body itself is safe Rust).
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx2,fma")]
            unsafe fn avx512($($arg: $ty),*) { generic($($arg),*) }
            /// # Safety
            /// The CPU must support AVX2 and FMA (the body itself is safe Rust).
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2($($arg: $ty),*) { generic($($arg),*) }
            match $crate::kernels::isa() {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `isa()` reports Avx512 only when the CPU has AVX-512F, AVX2 and FMA.
                $crate::kernels::Isa::Avx512 => unsafe { avx512($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `isa()` reports Avx2 only when the CPU has AVX2 and FMA.
                $crate::kernels::Isa::Avx2 => unsafe { avx2($($arg),*) },
                _ => generic($($arg),*),
            }
        }
    };
}
pub(crate) use multiversion;

//! A linear layer `y = x W^T + b` with weights packed once at load time, in fp32 or int8.

use super::encoder::Quantize;
use crate::kernels::gemm::{Epilogue, Gemm, PackedMatrix};
use crate::kernels::qgemm::{QGemm, QuantizedMatrix, QuantizedRows};

enum LinearWeights {
    F32(PackedMatrix),
    Int8(QuantizedMatrix),
}

/// A linear layer `y = x W^T + b` in either precision (an empty `bias` means none).
pub(crate) struct Linear {
    w: LinearWeights,
    bias: Vec<f32>,
}

impl Linear {
    pub(crate) fn new(w: &[f32], n: usize, k: usize, bias: Vec<f32>, quantize: Quantize) -> Self {
        let w = match quantize {
            Quantize::None => LinearWeights::F32(PackedMatrix::from_linear_weight(w, n, k)),
            Quantize::Int8 => LinearWeights::Int8(QuantizedMatrix::from_linear_weight(w, n, k)),
        };
        Linear { w, bias }
    }

    /// `c (+)= a W^T + b`, then the epilogue; `a` has `m` rows at stride `lda`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run(
        &self,
        a: &[f32],
        lda: usize,
        m: usize,
        c: &mut [f32],
        ldc: usize,
        accumulate: bool,
        epilogue: Epilogue,
        q: &mut QuantizedRows,
    ) {
        match &self.w {
            LinearWeights::F32(b) => Gemm {
                a,
                lda,
                m,
                b,
                bias: (!self.bias.is_empty()).then_some(&self.bias[..]),
                accumulate,
                epilogue,
            }
            .run(c, ldc, true),
            LinearWeights::Int8(b) => {
                q.quantize(a, lda, m, b.k(), true);
                QGemm {
                    a: q,
                    m,
                    b,
                    bias: (!self.bias.is_empty()).then_some(&self.bias[..]),
                    accumulate,
                    epilogue,
                }
                .run(c, ldc, true)
            }
        }
    }
}

//! The vector API the retrieval layer builds on: little-endian f32 (de)serialisation and int8
//! vectors scored against an f32 query with the engine's int8 GEMM. Callers see rows and inner
//! products, not the GEMM's panels, quantisation layout or epilogues.

use crate::kernels::gemm::Epilogue;
use crate::kernels::qgemm::{QGemm, QuantizedMatrix, QuantizedRows};

/// f32 values from little-endian bytes (a trailing partial value is ignored).
pub fn f32s_from_le(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Little-endian bytes of f32 values (the inverse of [`f32s_from_le`]).
pub fn f32s_to_le(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Row vectors stored as int8 (symmetric, one scale per row): a quarter of the bytes of f32,
/// inner products with a query approximate to about 1% of the vectors' norms.
pub struct Int8Rows(QuantizedMatrix);

impl Int8Rows {
    /// Quantizes `rows` row-major vectors of `dim` values (`data.len() == rows * dim`).
    pub fn quantize(data: &[f32], rows: usize, dim: usize) -> Int8Rows {
        assert_eq!(
            data.len(),
            rows * dim,
            "Int8Rows::quantize: data is not rows x dim"
        );
        // A linear layer's weight is exactly this: `rows` output rows of `dim` inputs.
        Int8Rows(QuantizedMatrix::from_linear_weight(data, rows, dim))
    }

    /// Rows held.
    pub fn rows(&self) -> usize {
        self.0.n()
    }

    /// The approximate inner product of `query` with every row, in row order.
    pub fn inner_products(&self, query: &[f32]) -> Vec<f32> {
        let mut q = QuantizedRows::default();
        q.quantize(query, query.len(), 1, query.len(), false);
        let mut out = vec![0f32; self.0.n()];
        QGemm {
            a: &q,
            m: 1,
            b: &self.0,
            bias: None,
            accumulate: false,
            epilogue: Epilogue::None,
        }
        .run(&mut out, self.0.n(), false);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn le_round_trip_and_int8_products_near_exact() {
        let v = [1.5f32, -0.25, 3.0e-5, f32::MAX];
        assert_eq!(f32s_from_le(&f32s_to_le(&v)), v);
        let dim = 64;
        let data: Vec<f32> = (0..3 * dim)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
            .collect();
        let q: Vec<f32> = (0..dim)
            .map(|i| ((i * 11 % 13) as f32 - 6.0) / 6.0)
            .collect();
        let rows = Int8Rows::quantize(&data, 3, dim);
        assert_eq!(rows.rows(), 3);
        for (r, got) in rows.inner_products(&q).iter().enumerate() {
            let want: f32 = (0..dim).map(|k| data[r * dim + k] * q[k]).sum();
            let norm: f32 = (0..dim)
                .map(|k| data[r * dim + k].powi(2))
                .sum::<f32>()
                .sqrt()
                * q.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!(
                (got - want).abs() <= 0.02 * norm,
                "row {r}: {got} vs {want}"
            );
        }
    }
}

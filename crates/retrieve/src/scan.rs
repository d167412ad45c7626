//! An int8 scan of every vector (the `int8-scan` dense index): vectors quantized per vector
//! (symmetric s8) in shards of [`SHARD`] rows, scored against the query with the engine's int8
//! GEMM (AVX-512 VNNI where present) on all cores, then the best candidates rescored exactly in
//! f32. It reads a quarter of the bytes of an f32 scan and, unlike a graph, needs no structure
//! in the data: the choice for vectors without neighbourhoods (or when every query must find
//! the exact top k).

use crossrank_engine::vectors::Int8Rows;
use rayon::prelude::*;

/// Rows per quantized shard (the unit of parallelism and of catching up with appends).
pub const SHARD: usize = 32_768;

/// Quantized shards covering rows `0..covered` of a row-major f32 matrix.
#[derive(Default)]
pub struct Int8Scan {
    shards: Vec<(usize, Int8Rows)>,
    covered: usize,
}

impl Int8Scan {
    /// Quantizes the rows not covered yet: whole shards only, unless `all`.
    pub fn catch_up(&mut self, data: &[f32], dim: usize, all: bool) {
        let rows = data.len() / dim.max(1);
        let mut starts = Vec::new();
        let mut s = self.covered;
        while rows - s >= SHARD || (all && s < rows) {
            starts.push(s);
            s = (s + SHARD).min(rows);
        }
        let new: Vec<(usize, Int8Rows)> = starts
            .par_iter()
            .map(|&start| {
                let n = SHARD.min(rows - start);
                let m = Int8Rows::quantize(&data[start * dim..(start + n) * dim], n, dim);
                (start, m)
            })
            .collect();
        self.shards.extend(new);
        self.covered = s;
    }

    /// Rows quantized so far (later rows must be scored exactly by the caller).
    pub fn covered(&self) -> usize {
        self.covered
    }

    /// The `depth` best rows by approximate inner product among `live` rows, best first.
    pub fn candidates(
        &self,
        q: &[f32],
        depth: usize,
        live: impl Fn(usize) -> bool + Sync,
    ) -> Vec<(usize, f32)> {
        let mut best: Vec<(usize, f32)> = self
            .shards
            .par_iter()
            .flat_map_iter(|(start, m)| {
                let mut scored: Vec<(usize, f32)> = m
                    .inner_products(q)
                    .into_iter()
                    .enumerate()
                    .map(|(i, s)| (start + i, s))
                    .filter(|(row, _)| live(*row))
                    .collect();
                top(&mut scored, depth);
                scored
            })
            .collect();
        top(&mut best, depth);
        best
    }
}

/// Keeps the `k` highest scores, best first.
pub fn top(v: &mut Vec<(usize, f32)>, k: usize) {
    if v.len() > k && k > 0 {
        v.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1));
    }
    v.truncate(k);
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
}

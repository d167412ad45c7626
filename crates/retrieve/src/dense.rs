//! Dense retrieval: exact inner-product search over normalised embeddings (cosine), with the
//! matrix kept in memory. (An ANN index for large collections is future work.)

/// Embeddings of a collection, row-major.
#[derive(Default, Clone)]
pub struct DenseIndex {
    dim: usize,
    ids: Vec<String>,
    data: Vec<f32>,
}

impl DenseIndex {
    /// An empty index of `dim`-wide vectors.
    pub fn new(dim: usize) -> Self {
        DenseIndex {
            dim,
            ids: Vec::new(),
            data: Vec::new(),
        }
    }
    /// Adds one vector.
    pub fn push(&mut self, id: String, v: &[f32]) {
        assert_eq!(v.len(), self.dim, "embedding width");
        self.ids.push(id);
        self.data.extend_from_slice(v);
    }
    /// Vectors held.
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
    /// The `k` best ids by inner product with `q`, best first.
    pub fn search(&self, q: &[f32], k: usize) -> Vec<(String, f32)> {
        let mut scored: Vec<(usize, f32)> = self
            .data
            .chunks_exact(self.dim.max(1))
            .enumerate()
            .map(|(i, v)| (i, v.iter().zip(q).map(|(a, b)| a * b).sum()))
            .collect();
        let k = k.min(scored.len());
        if k == 0 {
            return Vec::new();
        }
        scored.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1));
        scored.truncate(k);
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored
            .into_iter()
            .map(|(i, s)| (self.ids[i].clone(), s))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_top_k() {
        let mut d = DenseIndex::new(2);
        d.push("a".into(), &[1.0, 0.0]);
        d.push("b".into(), &[0.6, 0.8]);
        d.push("c".into(), &[0.0, 1.0]);
        let hits = d.search(&[0.0, 1.0], 2);
        assert_eq!(
            hits.iter().map(|h| h.0.as_str()).collect::<Vec<_>>(),
            ["c", "b"]
        );
        assert_eq!(d.search(&[1.0, 0.0], 10).len(), 3);
    }
}

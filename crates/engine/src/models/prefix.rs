//! Shared prompt prefixes of a decoder batch. Under a reranker template the pairs of one query
//! begin with the same tokens (system prompt, instruction, query); with causal attention the
//! keys and values of those tokens do not depend on anything after them, so they are computed
//! once per group of sequences and each member runs only its own suffix, attending to the
//! group's cached keys and values. The logits are those of the full sequences (the same sums,
//! only not repeated); nothing about the template is assumed: the groups come from the ids.

use super::encoder::PackedBatch;

/// Fewest shared tokens worth a separate prefix pass.
pub const MIN_SHARED: usize = 16;

/// A batch split into shared prefixes and per-sequence suffixes.
#[derive(Debug, Default)]
pub struct PrefixSplit {
    /// One sequence per group: its shared tokens, at their positions.
    pub prefixes: PackedBatch,
    /// Every input sequence, in input order, less its group's prefix (at least one token
    /// each); positions go on from the prefix's.
    pub suffixes: PackedBatch,
    /// Per suffix: (first row in `prefixes`, rows) of its prefix; `(0, 0)` = none.
    pub ranges: Vec<(usize, usize)>,
}

impl PrefixSplit {
    /// Tokens the split saves against running every sequence in full.
    pub fn saved_tokens(&self) -> usize {
        let full: usize = self.ranges.iter().map(|r| r.1).sum();
        full - self.prefixes.tokens()
    }
}

fn common(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Groups of `order[lo..hi]` (sorted sequences; `shared[i]` = tokens `order[i]` and
/// `order[i + 1]` may share) that save the most tokens, as `(lo, hi, shared)`, and the saving.
/// A group of `k` sequences sharing `m` tokens saves `(k - 1) m`; splitting a range where its
/// sharing is least gives sub-ranges that share more, and the better of the two is kept.
fn choose(
    shared: &[usize],
    lo: usize,
    hi: usize,
    min: usize,
) -> (usize, Vec<(usize, usize, usize)>) {
    if hi - lo < 2 {
        return (0, Vec::new());
    }
    let m = shared[lo..hi - 1].iter().copied().min().unwrap_or(0);
    let (mut saved, mut groups) = (0, Vec::new());
    let mut start = lo;
    for i in lo..hi {
        if i + 1 == hi || shared[i] == m {
            let (s, g) = choose(shared, start, i + 1, min);
            saved += s;
            groups.extend(g);
            start = i + 1;
        }
    }
    let whole = if m >= min { (hi - lo - 1) * m } else { 0 };
    if whole > 0 && whole >= saved {
        (whole, vec![(lo, hi, m)])
    } else {
        (saved, groups)
    }
}

/// Splits `batch` where at least two sequences share `min_shared` leading tokens or more;
/// `None` when nothing is shared.
pub fn split(batch: &PackedBatch, min_shared: usize) -> Option<PrefixSplit> {
    let n = batch.sequences();
    if n < 2 {
        return None;
    }
    let span = |s: usize| batch.offsets[s]..batch.offsets[s + 1];
    let ids = |s: usize| &batch.ids[span(s)];
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| ids(a).cmp(ids(b)));
    // Each member keeps at least its last token: the score is read there.
    let shared: Vec<usize> = order
        .windows(2)
        .map(|w| {
            let (a, b) = (ids(w[0]), ids(w[1]));
            common(a, b)
                .min(a.len().saturating_sub(1))
                .min(b.len().saturating_sub(1))
        })
        .collect();
    let (_, groups) = choose(&shared, 0, n, min_shared.max(1));
    if groups.is_empty() {
        return None;
    }
    let mut out = PrefixSplit {
        ranges: vec![(0, 0); n],
        ..PrefixSplit::default()
    };
    for (lo, hi, m) in groups {
        let first = out.prefixes.tokens();
        let start = batch.offsets[order[lo]];
        out.prefixes.push_tokens_of(batch, start..start + m);
        for &s in &order[lo..hi] {
            out.ranges[s] = (first, m);
        }
    }
    for s in 0..n {
        let r = span(s);
        out.suffixes
            .push_tokens_of(batch, r.start + out.ranges[s].1..r.end);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::split;
    use crate::models::encoder::PackedBatch;

    fn batch(seqs: &[Vec<u32>]) -> PackedBatch {
        let mut b = PackedBatch::default();
        b.offsets.push(0);
        for s in seqs {
            b.ids.extend_from_slice(s);
            b.type_ids.extend(std::iter::repeat_n(0, s.len()));
            b.positions.extend(0..s.len() as u32);
            b.offsets.push(b.ids.len());
        }
        b
    }

    fn seq(prefix: &[u32], rest: &[u32]) -> Vec<u32> {
        prefix.iter().chain(rest).copied().collect()
    }

    #[test]
    fn two_queries_get_two_prefixes_and_suffixes_keep_their_positions() {
        let system: Vec<u32> = (100..120).collect();
        let qa = seq(&system, &(200..230).collect::<Vec<_>>());
        let qb = seq(&system, &(300..340).collect::<Vec<_>>());
        let seqs = vec![
            seq(&qa, &[1, 2, 3]),
            seq(&qb, &[4, 5]),
            seq(&qa, &[6]),
            seq(&qb, &[7, 8, 9, 10]),
            seq(&qa, &[11, 12]),
        ];
        let b = batch(&seqs);
        let s = split(&b, 16).expect("shared prefixes");
        // Two groups, each system prompt + its query (the system prompt alone saves less).
        assert_eq!(s.prefixes.sequences(), 2);
        assert_eq!(s.ranges[0].1, qa.len());
        assert_eq!(s.ranges[1].1, qb.len());
        assert_eq!(s.ranges[0], s.ranges[2]);
        assert_eq!(s.ranges[1], s.ranges[3]);
        for (i, full) in seqs.iter().enumerate() {
            let (first, len) = s.ranges[i];
            let pre = &s.prefixes.ids[first..first + len];
            let suf = &s.suffixes.ids[s.suffixes.offsets[i]..s.suffixes.offsets[i + 1]];
            assert_eq!([pre, suf].concat(), *full, "sequence {i} reassembles");
            let pos = &s.suffixes.positions[s.suffixes.offsets[i]..s.suffixes.offsets[i + 1]];
            assert_eq!(
                pos[0] as usize, len,
                "suffix positions go on from the prefix"
            );
        }
        assert_eq!(s.saved_tokens(), 2 * qa.len() + qb.len());
    }

    #[test]
    fn every_member_keeps_its_last_token_and_short_overlaps_are_not_split() {
        let p: Vec<u32> = (1..=20).collect();
        // The second sequence is the prefix itself: the shared part stops one token short.
        let b = batch(&[seq(&p, &[50, 51]), p.clone()]);
        let s = split(&b, 16).expect("shared");
        assert_eq!(s.ranges[0].1, 19);
        assert_eq!(s.suffixes.offsets[2] - s.suffixes.offsets[1], 1);
        let short = batch(&[seq(&p[..10], &[1]), seq(&p[..10], &[2])]);
        assert!(
            split(&short, 16).is_none(),
            "10 shared tokens are under the minimum"
        );
        assert!(
            split(&batch(&[p]), 16).is_none(),
            "one sequence shares nothing"
        );
    }
}

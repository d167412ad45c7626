//! Paired significance tests on per-query metric values, percentiles of timing samples and
//! the one small deterministic PRNG the workspace uses for seeded tests and workloads.

/// Marsaglia's xorshift64: deterministic, seedable, not cryptographic.
#[derive(Debug, Clone)]
pub struct XorShift64(u64);

impl XorShift64 {
    /// A generator from `seed` (any value; zero is mapped to a valid state).
    pub fn new(seed: u64) -> Self {
        XorShift64(seed | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The `p`-quantile (`p` in [0, 1]) of `samples`, interpolated linearly between the closest
/// ranks (numpy's default, so `percentile(x, 0.5)` is the median); NaN without samples.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let pos = p.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// Two-sided paired randomisation (sign-flip) test of mean(b - a) with `iterations` random
/// relabellings from a fixed seed; returns the p-value.
pub fn randomization_test(a: &[f64], b: &[f64], iterations: usize, seed: u64) -> f64 {
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| y - x).collect();
    if d.is_empty() {
        return 1.0;
    }
    let observed = d.iter().sum::<f64>().abs();
    let mut rng = XorShift64::new(seed);
    let mut extreme = 0usize;
    for _ in 0..iterations {
        let mut s = 0.0;
        let mut bits = 0u64;
        for (i, v) in d.iter().enumerate() {
            if i % 64 == 0 {
                bits = rng.next_u64();
            }
            s += if bits >> (i % 64) & 1 == 1 { *v } else { -*v };
        }
        if s.abs() >= observed - 1e-12 {
            extreme += 1;
        }
    }
    (extreme + 1) as f64 / (iterations + 1) as f64
}

/// Wins, ties and losses of b over a (|difference| <= `eps` is a tie).
pub fn wins_ties_losses(a: &[f64], b: &[f64], eps: f64) -> (usize, usize, usize) {
    let mut w = (0, 0, 0);
    for (x, y) in a.iter().zip(b) {
        if (y - x).abs() <= eps {
            w.1 += 1;
        } else if y > x {
            w.0 += 1;
        } else {
            w.2 += 1;
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_between_ranks() {
        let x = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(percentile(&x, 0.5), 2.5);
        assert_eq!(percentile(&x, 0.0), 1.0);
        assert_eq!(percentile(&x, 1.0), 4.0);
        assert!((percentile(&x, 0.95) - 3.85).abs() < 1e-12);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn xorshift_is_the_published_sequence() {
        // Marsaglia (2003), xorshift64 with shifts 13, 7, 17 from state 1.
        let mut r = XorShift64::new(1);
        assert_eq!(r.next_u64(), 1082269761);
        let f = r.next_f64();
        assert!((0.0..1.0).contains(&f));
    }

    #[test]
    fn randomization_separates_shift_from_noise() {
        let a: Vec<f64> = (0..40).map(|i| (i as f64 * 0.7).sin()).collect();
        let shifted: Vec<f64> = a.iter().map(|x| x + 0.3).collect();
        assert!(randomization_test(&a, &shifted, 5000, 7) < 0.001);
        let noise: Vec<f64> = a
            .iter()
            .enumerate()
            .map(|(i, x)| x + if i % 2 == 0 { 0.1 } else { -0.1 })
            .collect();
        assert!(randomization_test(&a, &noise, 5000, 7) > 0.5);
        assert_eq!(wins_ties_losses(&a, &noise, 1e-9), (20, 0, 20));
    }
}

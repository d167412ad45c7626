//! Paired significance tests on per-query metric values.

/// Two-sided paired randomisation (sign-flip) test of mean(b - a) with `iterations` random
/// relabellings from a fixed seed; returns the p-value.
pub fn randomization_test(a: &[f64], b: &[f64], iterations: usize, seed: u64) -> f64 {
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| y - x).collect();
    if d.is_empty() {
        return 1.0;
    }
    let observed = d.iter().sum::<f64>().abs();
    let mut state = seed | 1;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut extreme = 0usize;
    for _ in 0..iterations {
        let mut s = 0.0;
        let mut bits = 0u64;
        for (i, v) in d.iter().enumerate() {
            if i % 64 == 0 {
                bits = next();
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

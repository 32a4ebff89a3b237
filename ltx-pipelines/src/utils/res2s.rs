//! Port of `ltx_pipelines/utils/res2s.py`: the exponential-integrator coefficients of the res_2s
//! sampler, in f64 with the reference's operation order (bit-exact where the libm is glibc's, as
//! Python's `math.exp` and `**` are).

use std::collections::HashMap;

/// `k!` as an f64 (exact for the small `k` used here).
fn factorial(k: u32) -> f64 {
    (1..=k).map(f64::from).product()
}

/// `φ_j(z) = (e^z − Σ_{k<j} z^k/k!) / z^j` at `z = neg_h` (the negative log step), and its limit
/// `1/j!` when `|z| < 1e-10`. Powers use `pow` (as Python's `**`), the sum runs from `k = 0`.
pub fn phi(j: u32, neg_h: f64) -> f64 {
    if neg_h.abs() < 1e-10 {
        return 1.0 / factorial(j);
    }
    let remainder: f64 = (0..j)
        .map(|k| neg_h.powf(f64::from(k)) / factorial(k))
        .sum();
    (neg_h.exp() - remainder) / neg_h.powf(f64::from(j))
}

/// Memo of [`phi`] values keyed by `(j, neg_h.to_bits())`, shared across the steps of a loop.
pub type PhiCache = HashMap<(u32, u64), f64>;

/// `(a21, b1, b2)` of a res_2s step of log-size `h = ln(σ/σ_next)` with the substep at `c2`
/// (0.5 in the loop): `a21 = c2·φ1(−h·c2)`, `b2 = φ2(−h)/c2`, `b1 = φ1(−h) − b2`, reusing and
/// filling `cache`.
pub fn get_res2s_coefficients(h: f64, cache: &mut PhiCache, c2: f64) -> (f64, f64, f64) {
    let mut get = |j: u32, z: f64| *cache.entry((j, z.to_bits())).or_insert_with(|| phi(j, z));
    let a21 = c2 * get(1, -h * c2);
    let b2 = get(2, -h) / c2;
    let b1 = get(1, -h) - b2;
    (a21, b1, b2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phi_limits() {
        assert_eq!(phi(1, 0.0), 1.0);
        assert_eq!(phi(2, 1e-12), 0.5);
        assert_eq!(phi(3, -5e-11), 1.0 / 6.0);
        assert!((phi(1, -1e-6) - 1.0).abs() < 1e-6);
        // φ1(z) = (e^z − 1)/z, φ2(z) = (e^z − 1 − z)/z²
        let z: f64 = -0.7;
        assert!((phi(1, z) - (z.exp() - 1.0) / z).abs() < 1e-15);
        assert!((phi(2, z) - (z.exp() - 1.0 - z) / (z * z)).abs() < 1e-15);
    }

    #[test]
    fn coefficients_and_cache() {
        let mut cache = PhiCache::new();
        let (a21, b1, b2) = get_res2s_coefficients(0.5, &mut cache, 0.5);
        // φ1(−0.25) = 0.884797…, φ2(−0.5) = 0.426123…, φ1(−0.5) = 0.786938…
        assert!((a21 - 0.5 * 0.884_797_8).abs() < 1e-6, "{a21}");
        assert!((b2 - 0.426_122_6 / 0.5).abs() < 1e-6, "{b2}");
        assert!((b1 - (0.786_938_7 - b2)).abs() < 1e-6, "{b1}");
        assert_eq!(cache.len(), 3);
        // a second step of the same size reuses every entry; h = 1 shares φ1(−0.5) with h = 0.5
        assert_eq!(get_res2s_coefficients(0.5, &mut cache, 0.5), (a21, b1, b2));
        assert_eq!(cache.len(), 3);
        get_res2s_coefficients(1.0, &mut cache, 0.5);
        assert_eq!(cache.len(), 5);
    }
}

//! Port of `ltx_pipelines/utils/res2s.py`: the exponential-integrator coefficients of the res_2s
//! sampler.

use std::collections::HashMap;

/// `φ_j(z) = (e^z − Σ_{k<j} z^k/k!) / z^j`, with `φ_j(0) = 1/j!` for `|z| < 1e-10`.
pub fn phi(j: u32, neg_h: f64) -> f64 {
    let factorial = |n: u32| (1..=n).map(f64::from).product::<f64>();
    if neg_h.abs() < 1e-10 {
        return 1.0 / factorial(j);
    }
    let remainder: f64 = (0..j).map(|k| neg_h.powi(k as i32) / factorial(k)).sum();
    (neg_h.exp() - remainder) / neg_h.powi(j as i32)
}

/// Memo of [`phi`] values keyed by `(j, bits of z)`.
pub type PhiCache = HashMap<(u32, u64), f64>;

/// `(a21, b1, b2)` of a res_2s step of log-size `h` with the substep at `c2`:
/// `a21 = c2·φ1(−h·c2)`, `b2 = φ2(−h)/c2`, `b1 = φ1(−h) − b2`.
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
        assert!((phi(1, -1e-6) - 1.0).abs() < 1e-6);
        let mut cache = PhiCache::new();
        let (a21, b1, b2) = get_res2s_coefficients(0.5, &mut cache, 0.5);
        // φ1(−0.25) = 0.884797…, φ2(−0.5) = 0.426123…, φ1(−0.5) = 0.786938…
        assert!((a21 - 0.5 * 0.884_797_8).abs() < 1e-6, "{a21}");
        assert!((b2 - 0.426_122_6 / 0.5).abs() < 1e-6, "{b2}");
        assert!((b1 - (0.786_938_7 - b2)).abs() < 1e-6, "{b1}");
        assert_eq!(cache.len(), 3);
    }
}

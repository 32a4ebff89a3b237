//! A branch-free `exp` for f32 that the compiler vectorises (libm's `expf` is a scalar call),
//! and the softmax row pass built on it. Within 2 ulp of `f32::exp` on the softmax range; the same
//! result on every machine (no fused multiply-adds, a fixed summation order), with AVX2 code
//! selected at run time where the CPU has it.

const LOG2E: f32 = std::f32::consts::LOG2_E;
// ln 2 split in a part exact in few bits and the rest (Cody–Waite reduction)
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
// 1.5 · 2²³: adding it rounds to the nearest integer and leaves that integer in the low bits
const ROUND: f32 = 12_582_912.0;
/// Below this `exp` underflows to 0 (f32 has no normal number under e^−87.34).
const MIN_ARG: f32 = -87.336_55;
/// Above this `exp` overflows.
const MAX_ARG: f32 = 88.376_26;

/// `e^x`, within 2 ulp of libm for |x| ≤ 87; 0 below −87.34, `∞` above 88.38, NaN for NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let xc = x.clamp(MIN_ARG, MAX_ARG);
    let t = xc * LOG2E + ROUND;
    let n = t - ROUND;
    let k = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let r = xc - n * LN2_HI - n * LN2_LO;
    let r2 = r * r;
    // Cephes' minimax polynomial for e^r on [−ln2/2, ln2/2]
    let p = ((((1.987_569_1e-4 * r + 1.398_2e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let e = p * r2 + r + 1.0;
    // 2^k split in two factors so k = 128 (the top of the range) stays finite until the product
    let half = k >> 1;
    let s1 = f32::from_bits(((half + 127) as u32) << 23);
    let s2 = f32::from_bits(((k - half + 127) as u32) << 23);
    let y = e * s1 * s2;
    if x < MIN_ARG {
        0.0
    } else if x > MAX_ARG {
        f32::INFINITY
    } else if x.is_nan() {
        x
    } else {
        y
    }
}

const LANES: usize = 8;

/// `row ← softmax(row)`: `exp(s − max) / Σ`, the max and the sum over 8 interleaved lanes.
#[inline(always)]
fn softmax_body(row: &mut [f32]) {
    let mut mx = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        for (m, &v) in mx.iter_mut().zip(c) {
            *m = if v > *m { v } else { *m };
        }
    }
    let mut max = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |a, &v| a.max(v));
    for m in mx {
        max = max.max(m);
    }
    let mut acc = [0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c.iter_mut()) {
            *v = exp(*v - max);
            *a += *v;
        }
    }
    let mut sum = 0f32;
    for v in chunks.into_remainder() {
        *v = exp(*v - max);
        sum += *v;
    }
    for a in acc {
        sum += a;
    }
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|v| *v *= inv);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn softmax_avx2(row: &mut [f32]) {
    softmax_body(row)
}

/// `softmax` of one row in place (a fully `-inf` row gives NaN, as torch's does).
pub fn softmax_in_place(row: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked above)
        return unsafe { softmax_avx2(row) };
    }
    softmax_body(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i32).abs_diff(b.to_bits() as i32)
    }

    #[test]
    fn exp_is_within_two_ulp_of_libm() {
        let mut worst = 0;
        let mut x = -87.0f32;
        while x < 88.0 {
            worst = worst.max(ulps(exp(x), x.exp()));
            x += 0.000_37;
        }
        assert!(worst <= 2, "{worst} ulp");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(f32::MIN), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(100.0), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn softmax_matches_the_libm_formula() {
        for n in [1usize, 7, 8, 9, 100] {
            let row: Vec<f32> = (0..n).map(|i| ((i * 37 % 11) as f32 - 5.0) * 1.7).collect();
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f32> = row.iter().map(|v| (v - max).exp()).collect();
            let s: f32 = e.iter().sum();
            let mut got = row.clone();
            softmax_in_place(&mut got);
            for (g, w) in got.iter().zip(&e) {
                assert!(
                    (g - w / s).abs() <= 1e-6 * (w / s).max(1e-3),
                    "{g} {}",
                    w / s
                );
            }
        }
        // a row of finite minima (a fully masked row) is uniform
        let mut row = vec![f32::MIN; 5];
        softmax_in_place(&mut row);
        assert!(row.iter().all(|&v| (v - 0.2).abs() < 1e-7));
    }
}

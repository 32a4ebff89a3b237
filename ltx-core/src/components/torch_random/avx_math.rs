//! One lane of `log256_ps` and `sincos256_ps` from ATen's `aten/src/ATen/native/cpu/avx_mathfun.h`
//! (Giovanni Garberoglio's AVX port of Julien Pommier's Cephes-based `sse_mathfun.h`), as torch
//! 2.11's x86-64 wheel runs them inside `normal_fill_16_AVX2`.
//!
//! The source writes separate `_mm256_mul_ps` / `_mm256_add_ps` calls, but GCC builds the AVX2
//! kernels with `-mfma` and contracts many of them into fused multiply-adds. Which pairs were
//! fused was read from the disassembly of `libtorch_cpu.so` (torch 2.11.0+cu130, the
//! `normal_kernel<CPUGeneratorImpl*>` AVX2 specialisation; the main loop and the tail block are
//! compiled identically): every `f32::mul_add` below is a `vfmadd`/`vfnmadd`/`vfmsub` there, every
//! other operation a single rounded `vmulps`/`vaddps`/`vsubps`. Changing either changes the last
//! bit of some normals.

// The Cephes constants as the header spells them; the compiler rounds them to f32, as GCC does.
#![allow(clippy::excessive_precision)]

const MIN_NORM_POS: f32 = f32::MIN_POSITIVE;
const INV_MANT_MASK: u32 = !0x7f80_0000;
const SIGN_MASK: u32 = 0x8000_0000;
const SQRTHF: f32 = std::f32::consts::FRAC_1_SQRT_2;
const LOG_P: [f32; 9] = [
    7.037_683_629_2E-2,
    -1.151_461_031_0E-1,
    1.167_699_874_0E-1,
    -1.242_014_084_6E-1,
    1.424_932_278_7E-1,
    -1.666_805_766_5E-1,
    2.000_071_476_5E-1,
    -2.499_999_399_3E-1,
    3.333_333_117_4E-1,
];
const LOG_Q1: f32 = -2.121_944_40e-4;
const LOG_Q2: f32 = 0.693_359_375;

const FOPI: f32 = 1.273_239_544_735_16; // 4 / π
const MINUS_DP1: f32 = -0.785_156_25;
const MINUS_DP2: f32 = -2.418_756_484_985_351_562_5e-4;
const MINUS_DP3: f32 = -3.774_894_977_445_941_08e-8;
const SINCOF: [f32; 3] = [-1.951_529_589_1E-4, 8.332_160_873_6E-3, -1.666_665_461_1E-1];
const COSCOF: [f32; 3] = [
    2.443_315_711_809_948E-5,
    -1.388_731_625_493_765E-3,
    4.166_664_568_298_827E-2,
];

/// `_mm256_cvttps_epi32` on one lane: truncation, `i32::MIN` for NaN and out-of-range values.
fn cvtt(x: f32) -> i32 {
    if x.abs() < 2_147_483_648.0 {
        x as i32
    } else {
        i32::MIN
    }
}

/// `log256_ps` on one lane: the natural logarithm, NaN for `x ≤ 0`.
pub fn log(x: f32) -> f32 {
    let invalid = x <= 0.0;
    let x = x.max(MIN_NORM_POS);
    let exponent = (x.to_bits() >> 23) as i32;
    let x = f32::from_bits((x.to_bits() & INV_MANT_MASK) | 0.5f32.to_bits());
    let mut e = (exponent - 0x7f) as f32 + 1.0;
    let below = x < SQRTHF;
    let tmp = if below { x } else { 0.0 };
    let x = x + -1.0;
    e -= if below { 1.0 } else { 0.0 };
    let x = tmp + x;
    let z = x * x;
    let mut y = LOG_P[0];
    for p in &LOG_P[1..] {
        y = y.mul_add(x, *p);
    }
    let y = x * y;
    let y = y.mul_add(z, e * LOG_Q1);
    let y = (-z).mul_add(0.5, y);
    let x = e.mul_add(LOG_Q2, x + y);
    if invalid {
        f32::from_bits(u32::MAX)
    } else {
        x
    }
}

/// `sincos256_ps` on one lane: `(sin x, cos x)`.
pub fn sincos(x: f32) -> (f32, f32) {
    let mut sign_sin = x.to_bits() & SIGN_MASK;
    let x = x.abs();
    let j = cvtt(x * FOPI).wrapping_add(1);
    let swap_sign_sin = ((j & 4) as u32) << 29;
    let use_sin_poly = j & 2 == 0;
    let j = j & !1;
    let y = j as f32;
    let x = y.mul_add(MINUS_DP1, x);
    let x = y.mul_add(MINUS_DP2, x);
    let x = y.mul_add(MINUS_DP3, x);
    let sign_cos = ((!j.wrapping_sub(2) & 4) as u32) << 29;
    sign_sin ^= swap_sign_sin;

    let z = x * x;
    let yc = z.mul_add(COSCOF[0], COSCOF[1]);
    let yc = z.mul_add(yc, COSCOF[2]);
    let half_z = z * 0.5;
    let yc = (z * yc).mul_add(z, -half_z);
    let yc = yc + 1.0;

    let ys = z.mul_add(SINCOF[0], SINCOF[1]);
    let ys = z.mul_add(ys, SINCOF[2]);
    let ys = (z * ys).mul_add(x, x);

    let (ysin2, ysin1) = if use_sin_poly { (ys, 0.0) } else { (0.0, yc) };
    let ys = ys - ysin2;
    let yc = yc - ysin1;
    let sin = ysin1 + ysin2;
    let cos = yc + ys;
    (
        f32::from_bits(sin.to_bits() ^ sign_sin),
        f32::from_bits(cos.to_bits() ^ sign_cos),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_to_libm_on_the_box_muller_ranges() {
        // u1 ∈ [2⁻²⁴, 1], θ ∈ [0, 2π): the ranges normal_fill_16_AVX2 feeds them
        for k in 1..=4096 {
            let u = k as f32 / 4096.0;
            assert!(
                (log(u) - u.ln()).abs() <= 2e-7 * u.ln().abs().max(1.0),
                "{u}"
            );
            let t = u * std::f32::consts::TAU;
            let (s, c) = sincos(t);
            assert!(
                (s - t.sin()).abs() < 3e-7 && (c - t.cos()).abs() < 3e-7,
                "{t}"
            );
        }
        assert_eq!(log(1.0), 0.0);
        assert!(log(0.0).is_nan() && log(-1.0).is_nan());
    }
}

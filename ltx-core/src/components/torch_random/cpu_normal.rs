//! ATen's CPU `normal_` (what `torch.randn(..., generator=cpu_generator)` runs), from
//! `aten/src/ATen/native/cpu/DistributionTemplates.h` (`normal_kernel`, `normal_fill`,
//! `normal_fill_16`, `normal_fill_AVX2`) and `aten/src/ATen/core/DistributionsHelper.h`
//! (`uniform_real_distribution`, `normal_distribution`), torch 2.11.
//!
//! A draw of `n` values (always contiguous for `randn`) takes one of two paths:
//!
//! - **`n ≥ 16`, `normal_fill`**: fill all `n` slots with uniforms `u ∈ [0, 1)` of the dtype
//!   (f32: `(w & (2²⁴−1))·2⁻²⁴` of one 32-bit word; f64: 53 bits of `random64()`; bf16: 8 bits;
//!   f16: 11 bits), then for each whole block of 16 apply Box–Muller to the pairs `(j, j+8)`,
//!   `j < 8`: `r = √(−2 ln(1 − u_j))`, `θ = 2π·u_{j+8}`, `x_j = r cos θ`, `x_{j+8} = r sin θ`. When
//!   `n % 16 ≠ 0` the last 16 slots are refilled with 16 fresh uniforms and transformed again (they
//!   overlap the last whole block).
//!   - f32 on x86-64 with AVX2 (`CPU_CAPABILITY_AVX2`; torch dispatches AVX512 machines to the
//!     AVX2 kernel too, `REGISTER_NO_AVX512_DISPATCH(normal_stub)`): `normal_fill_AVX2`, the math of
//!     `avx_math.rs` in f32, `θ = 6.2831855f32·u`.
//!   - f32 elsewhere (`ATEN_CPU_CAPABILITY=default`, Arm), f64: `normal_fill_16<scalar_t>` with libm's
//!     `log`/`cos`/`sin` in the dtype, `θ` computed in f64 and rounded to the dtype.
//!   - bf16 / f16: the same `normal_fill_16` in c10's reduced type: every operation is done in f32
//!     and rounded to the type (`1 − u`, `logf`, `×(−2)`, `sqrtf`, `θ` via f64, `cosf`/`sinf`,
//!     `r·cos`), so bf16 noise is **not** the f32 noise rounded.
//! - **`n < 16`**: per element, `normal_distribution<double>`: `u₁, u₂` from `random64()`,
//!   `r = √(−2·log1p(−u₂))`, `θ = 2π·u₁`; returns `r cos θ` and caches `r sin θ` in the generator,
//!   which the next per-element draw returns first (the cache survives `normal_fill` draws in
//!   between). The f64 value is rounded to the dtype (via f32 for bf16 / f16).
//!
//! libm: `logf`, `sinf`, `cosf`, `log`, `log1p`, `sin`, `cos` are the platform's (glibc on Linux, as
//! torch's wheel calls them); the AVX2 f32 path uses none.

use half::{bf16, f16};

use super::avx_math;
use super::mt19937::{uniform_bits, CpuGenerator};

/// Below this many elements ATen draws element by element.
pub const FILL_MIN_NUMEL: usize = 16;
/// `2.0f * c10::pi<double>` rounded to f32 (`_mm256_set1_ps` in `normal_fill_AVX2`).
const TWO_PI_F32: f32 = std::f64::consts::TAU as f32;
/// `randn`'s mean and standard deviation: `x·std + mean` is still computed (it turns −0 into +0).
const MEAN: f64 = 0.0;
const STD: f64 = 1.0;

/// Which of ATen's CPU kernels draws f32 (the others do not depend on it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CpuKernel {
    /// `normal_fill_AVX2`: torch's x86-64 build on any CPU with AVX2 and FMA.
    #[default]
    Avx2,
    /// `normal_fill<float>` with libm (no AVX2, or torch's Arm builds).
    Scalar,
}

/// A dtype ATen's `normal_fill` runs in.
trait FillFloat: Copy {
    /// `at::uniform_real_distribution<scalar_t>(0, 1)`.
    fn uniform(g: &mut CpuGenerator) -> Self;
    /// `normal_fill_16<scalar_t>` on the pair `(u_j, u_{j+8})`.
    fn box_muller(u1: Self, u2: Self) -> (Self, Self);
    /// `static_cast<scalar_t>` of the per-element path's f64 normal.
    fn from_f64(x: f64) -> Self;
}

impl FillFloat for f32 {
    fn uniform(g: &mut CpuGenerator) -> Self {
        g.uniform_f32()
    }
    fn box_muller(u1: Self, u2: Self) -> (Self, Self) {
        let radius = (-2.0 * (1.0 - u1).ln()).sqrt();
        let theta = (std::f64::consts::TAU * u2 as f64) as f32;
        let out = |x: f32| x * STD as f32 + MEAN as f32;
        (out(radius * theta.cos()), out(radius * theta.sin()))
    }
    fn from_f64(x: f64) -> Self {
        x as f32
    }
}

impl FillFloat for f64 {
    fn uniform(g: &mut CpuGenerator) -> Self {
        g.uniform_f64()
    }
    fn box_muller(u1: Self, u2: Self) -> (Self, Self) {
        let radius = (-2.0 * (1.0 - u1).ln()).sqrt();
        let theta = std::f64::consts::TAU * u2;
        let out = |x: f64| x * STD + MEAN;
        (out(radius * theta.cos()), out(radius * theta.sin()))
    }
    fn from_f64(x: f64) -> Self {
        x
    }
}

/// c10's `BFloat16` / `Half` arithmetic: each operation in f32, rounded to the type (nearest even).
macro_rules! reduced_fill_float {
    ($t:ty) => {
        impl FillFloat for $t {
            fn uniform(g: &mut CpuGenerator) -> Self {
                <$t>::from_f64(uniform_bits(g.random(), <$t>::MANTISSA_DIGITS))
            }
            fn box_muller(u1: Self, u2: Self) -> (Self, Self) {
                let r = |x: f32| <$t>::from_f32(x);
                let u1 = r(1.0 - u1.to_f32());
                let log = r(u1.to_f32().ln());
                let radius = r(r(-2.0 * log.to_f32()).to_f32().sqrt());
                let theta = r((std::f64::consts::TAU * u2.to_f64()) as f32);
                let (sin, cos) = (r(theta.to_f32().sin()), r(theta.to_f32().cos()));
                let out = |trig: $t| {
                    let x = r(radius.to_f32() * trig.to_f32());
                    let x = r(x.to_f32() * STD as f32);
                    r(x.to_f32() + MEAN as f32)
                };
                (out(cos), out(sin))
            }
            fn from_f64(x: f64) -> Self {
                <$t>::from_f32(x as f32)
            }
        }
    };
}
reduced_fill_float!(bf16);
reduced_fill_float!(f16);

/// `normal_fill`: uniforms for all `n` slots, Box–Muller per block of 16, the tail block redrawn.
fn normal_fill<T: FillFloat>(g: &mut CpuGenerator, n: usize, fill_16: impl Fn(&mut [T])) -> Vec<T> {
    debug_assert!(n >= FILL_MIN_NUMEL);
    let mut data: Vec<T> = (0..n).map(|_| T::uniform(g)).collect();
    for block in data.chunks_exact_mut(16) {
        fill_16(block);
    }
    if n % 16 != 0 {
        let tail = &mut data[n - 16..];
        for v in tail.iter_mut() {
            *v = T::uniform(g);
        }
        fill_16(tail);
    }
    data
}

/// `normal_fill_16<scalar_t>`.
fn fill_16_scalar<T: FillFloat>(block: &mut [T]) {
    for j in 0..8 {
        let (a, b) = T::box_muller(block[j], block[j + 8]);
        block[j] = a;
        block[j + 8] = b;
    }
}

/// `normal_fill_16_AVX2`.
fn fill_16_avx2(block: &mut [f32]) {
    for j in 0..8 {
        let u1 = 1.0 - block[j];
        let u2 = block[j + 8];
        let radius = (-2.0 * avx_math::log(u1)).sqrt();
        let (sin, cos) = avx_math::sincos(TWO_PI_F32 * u2);
        block[j] = (radius * cos).mul_add(STD as f32, MEAN as f32);
        block[j + 8] = (radius * sin).mul_add(STD as f32, MEAN as f32);
    }
}

/// `normal_distribution<double>(0, 1)` with the generator's cached second value.
fn normal_f64_cached(g: &mut CpuGenerator) -> f64 {
    if let Some(v) = g.next_double_normal.take() {
        return v.mul_add(STD, MEAN);
    }
    let u1 = g.uniform_f64();
    let u2 = g.uniform_f64();
    let r = (-2.0 * (-u2).ln_1p()).sqrt();
    let theta = std::f64::consts::TAU * u1;
    g.next_double_normal = Some(r * theta.sin());
    (theta.cos() * r).mul_add(STD, MEAN)
}

/// The per-element path (`n < 16`).
fn normal_serial<T: FillFloat>(g: &mut CpuGenerator, n: usize) -> Vec<T> {
    (0..n).map(|_| T::from_f64(normal_f64_cached(g))).collect()
}

fn normal<T: FillFloat>(g: &mut CpuGenerator, n: usize) -> Vec<T> {
    if n >= FILL_MIN_NUMEL {
        normal_fill(g, n, fill_16_scalar::<T>)
    } else {
        normal_serial(g, n)
    }
}

/// `torch.randn(n, dtype=torch.float32, generator=g)` on the CPU.
pub fn normal_f32(g: &mut CpuGenerator, n: usize, kernel: CpuKernel) -> Vec<f32> {
    match kernel {
        CpuKernel::Avx2 if n >= FILL_MIN_NUMEL => normal_fill(g, n, fill_16_avx2),
        _ => normal(g, n),
    }
}

/// `torch.randn(n, dtype=torch.float64, generator=g)` on the CPU.
pub fn normal_f64(g: &mut CpuGenerator, n: usize) -> Vec<f64> {
    normal(g, n)
}

/// `torch.randn(n, dtype=torch.bfloat16, generator=g)` on the CPU.
pub fn normal_bf16(g: &mut CpuGenerator, n: usize) -> Vec<bf16> {
    normal(g, n)
}

/// `torch.randn(n, dtype=torch.float16, generator=g)` on the CPU.
pub fn normal_f16(g: &mut CpuGenerator, n: usize) -> Vec<f16> {
    normal(g, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_draws_one_word_per_slot_plus_a_redrawn_tail() {
        for (n, words) in [(16, 16), (32, 32), (37, 53), (48, 48)] {
            let mut g = CpuGenerator::new(11);
            normal_f32(&mut g, n, CpuKernel::Avx2);
            let mut fresh = CpuGenerator::new(11);
            for _ in 0..words {
                fresh.random();
            }
            assert_eq!(g.random(), fresh.random(), "n = {n}");
        }
        // f64 uses two words per uniform
        let mut g = CpuGenerator::new(2);
        normal_f64(&mut g, 16);
        let mut fresh = CpuGenerator::new(2);
        (0..32).for_each(|_| {
            fresh.random();
        });
        assert_eq!(g.random(), fresh.random());
    }

    #[test]
    fn per_element_path_caches_the_second_value() {
        let mut g = CpuGenerator::new(5);
        let two = normal_f64(&mut g, 2);
        let mut h = CpuGenerator::new(5);
        let a = normal_f64(&mut h, 1);
        // a bulk draw in between neither uses nor clears the cache
        normal_f64(&mut h, 16);
        let b = normal_f64(&mut h, 1);
        assert_eq!(two, [a[0], b[0]]);
    }

    #[test]
    fn kernels_agree_to_float_rounding() {
        let a = normal_f32(&mut CpuGenerator::new(3), 1000, CpuKernel::Avx2);
        let b = normal_f32(&mut CpuGenerator::new(3), 1000, CpuKernel::Scalar);
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= 2e-6 * y.abs().max(1.0), "{x} {y}");
        }
        let h = normal_bf16(&mut CpuGenerator::new(3), 1000);
        assert!(h
            .iter()
            .all(|v| v.to_f32().is_finite() && v.to_f32().abs() < 6.0));
    }
}

//! torch's CPU generator: `torch.Generator("cpu").manual_seed(seed)`, ATen's `at::mt19937`
//! (`aten/src/ATen/core/MT19937RNGEngine.h`) inside `at::CPUGeneratorImpl`
//! (`aten/src/ATen/CPUGeneratorImpl.cpp`).
//!
//! - **Seeding** (`mt19937_engine::init_with_uint32`): the 64-bit seed is kept as the generator's
//!   seed, but only its low 32 bits enter the state: `state[0] = seed & 0xffff_ffff`,
//!   `state[j] = 1812433253 · (state[j−1] ⊕ (state[j−1] >> 30)) + j` (mod 2³²), the standard
//!   MT19937 `init_genrand`. A Python seed `s < 0` is taken as `s + 2⁶⁴` by `manual_seed`.
//! - **`random()`**: the next tempered 32-bit word of the standard MT19937 stream.
//! - **`random64()`**: two words, the first in the high half: `(w₀ << 32) | w₁`.
//! - **Normal cache**: `normal_distribution<double>` (the per-element path of `normal_`) draws two
//!   normals at a time and keeps the second for the next call; `manual_seed` clears it. The
//!   bulk `normal_fill` path neither reads nor writes it, so it survives such draws.

const N: usize = 624;
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// The MT19937 engine as ATen keeps it (32-bit state words, refilled when `left` reaches 0).
#[derive(Clone)]
pub struct Mt19937 {
    state: Box<[u32; N]>,
    /// Words left before the next refill, plus one (ATen starts at 1: the first call refills).
    left: usize,
    next: usize,
}

impl std::fmt::Debug for Mt19937 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mt19937")
            .field("left", &self.left)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl Mt19937 {
    /// The engine `at::mt19937(seed)` builds: seeded with `seed`'s low 32 bits.
    pub fn new(seed: u64) -> Self {
        let mut state = Box::new([0u32; N]);
        state[0] = seed as u32;
        for j in 1..N {
            let prev = state[j - 1];
            state[j] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(j as u32);
        }
        Self {
            state,
            left: 1,
            next: 0,
        }
    }

    fn twist(u: u32, v: u32) -> u32 {
        let mixed = (u & UPPER_MASK) | (v & LOWER_MASK);
        (mixed >> 1) ^ if v & 1 == 1 { MATRIX_A } else { 0 }
    }

    fn refill(&mut self) {
        let s = &mut *self.state;
        for j in 0..N - M {
            s[j] = s[j + M] ^ Self::twist(s[j], s[j + 1]);
        }
        for j in N - M..N - 1 {
            s[j] = s[j + M - N] ^ Self::twist(s[j], s[j + 1]);
        }
        s[N - 1] = s[M - 1] ^ Self::twist(s[N - 1], s[0]);
        self.left = N;
        self.next = 0;
    }

    /// The next tempered 32-bit word.
    pub fn next_u32(&mut self) -> u32 {
        self.left -= 1;
        if self.left == 0 {
            self.refill();
        }
        let mut y = self.state[self.next];
        self.next += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }
}

/// `at::CPUGeneratorImpl`: the engine plus the cached second Box–Muller normal.
#[derive(Clone, Debug)]
pub struct CpuGenerator {
    seed: u64,
    engine: Mt19937,
    /// `next_double_normal_sample_`: set by [`super::cpu_normal`]'s per-element path.
    pub(super) next_double_normal: Option<f64>,
}

impl CpuGenerator {
    /// `torch.Generator("cpu").manual_seed(seed)`.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            engine: Mt19937::new(seed),
            next_double_normal: None,
        }
    }

    /// `torch.Generator("cpu").manual_seed(seed)` for a Python integer seed (negative seeds wrap
    /// to `seed + 2⁶⁴`, as torch's `manual_seed` does).
    pub fn from_i64(seed: i64) -> Self {
        Self::new(seed as u64)
    }

    /// `initial_seed()`.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// `CPUGeneratorImpl::random()`: one 32-bit word.
    pub fn random(&mut self) -> u32 {
        self.engine.next_u32()
    }

    /// `CPUGeneratorImpl::random64()`: two words, the first in the high half.
    pub fn random64(&mut self) -> u64 {
        let hi = self.engine.next_u32() as u64;
        let lo = self.engine.next_u32() as u64;
        (hi << 32) | lo
    }

    /// `at::uniform_real_distribution<float>(0, 1)`: 24 random bits, `(w & (2²⁴−1)) · 2⁻²⁴`.
    pub fn uniform_f32(&mut self) -> f32 {
        uniform_bits(self.random(), f32::MANTISSA_DIGITS) as f32
    }

    /// `at::uniform_real_distribution<double>(0, 1)`: 53 bits of `random64()`.
    pub fn uniform_f64(&mut self) -> f64 {
        let w = self.random64() & ((1u64 << f64::MANTISSA_DIGITS) - 1);
        w as f64 / (1u64 << f64::MANTISSA_DIGITS) as f64
    }
}

/// `transformation::uniform_real` on a 32-bit word for a type of `digits` significand bits:
/// `(w & (2^digits − 1)) / 2^digits`, exact in every type `digits` describes.
pub(super) fn uniform_bits(w: u32, digits: u32) -> f64 {
    (w & ((1u32 << digits) - 1)) as f64 / (1u64 << digits) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mt19937_standard_stream() {
        // The reference MT19937 (mt19937ar.c, `init_genrand(5489)`): first outputs, and the
        // 10000th output required of `std::mt19937` by the C++ standard.
        let mut e = Mt19937::new(5489);
        assert_eq!(e.next_u32(), 3_499_211_612);
        assert_eq!(e.next_u32(), 581_869_302);
        assert_eq!(e.next_u32(), 3_890_346_734);
        let mut e = Mt19937::new(5489);
        let v = (0..10_000).map(|_| e.next_u32()).last();
        assert_eq!(v, Some(4_123_659_995));
    }

    #[test]
    fn seed_uses_the_low_32_bits() {
        let mut a = CpuGenerator::new(7);
        let mut b = CpuGenerator::new(7 | (5 << 32));
        assert_eq!(a.random64(), b.random64());
        assert_eq!(b.seed(), 7 | (5 << 32));
        let mut c = CpuGenerator::from_i64(-1);
        assert_eq!(c.seed(), u64::MAX);
        assert_eq!(c.random(), CpuGenerator::new(0xffff_ffff).random());
    }

    #[test]
    fn random64_is_two_words_high_first() {
        let mut a = CpuGenerator::new(3);
        let mut b = CpuGenerator::new(3);
        let (w0, w1) = (b.random() as u64, b.random() as u64);
        assert_eq!(a.random64(), (w0 << 32) | w1);
    }
}

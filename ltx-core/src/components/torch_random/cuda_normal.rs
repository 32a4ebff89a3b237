//! torch's CUDA `normal_` (`torch.randn(..., device="cuda", generator=cuda_generator)`), from
//! `aten/src/ATen/native/cuda/DistributionTemplates.h` (`calc_execution_policy`,
//! `distribution_elementwise_grid_stride_kernel`, `normal_and_transform`), `CUDAGeneratorImpl`'s
//! `philox_cuda_state` and cuRAND's `curand_normal4` / `curand_normal2_double`
//! (`curand_normal.h`, CUDA 13), computed on the CPU.
//!
//! **Layout.** A draw of `n` values launches `grid` blocks of 256 threads,
//! `grid = min(⌈n/256⌉, multiprocessors · (max_threads_per_multiprocessor / 256))`: it depends on
//! the GPU (H100 / H200: 132 SMs × 2048 threads → 1056 blocks). Thread `t` (`0 ≤ t < 256·grid`)
//! runs `curand_init(seed, t, offset)` and, for `i = t, t + 4S, t + 8S, …` below `n` rounded up to
//! a multiple of `4S` (`S = 256·grid`), draws one `curand_normal4` and writes its four values to
//! `i, i + S, i + 2S, i + 3S` (those below `n`). f64 draws two per call (`curand_normal2_double`,
//! stride `2S`). The generator's offset (0 after `manual_seed`) then grows by
//! `4·⌈n / (S·unroll)⌉` (unroll 4 for f32 / bf16 / f16, 2 for f64).
//!
//! **Values.** `curand_normal4` turns each word pair `(x, y)` of one `curand4` into
//! `u = x·2⁻³² + 2⁻³³`, `v = y·(2⁻³²·2π) + 2⁻³³·2π` (f32, fused), `s = √(−2 ln u)` and returns
//! `(s·sin v, s·cos v)`; bf16 / f16 are the f32 values rounded. f64: `u`, `v` from 53-bit words,
//! `s·sinπv, s·cosπv`.
//!
//! **Not bit-exact.** On the GPU, `ln` is CUDA's `logf` and `sin`/`cos` are the `__sincosf`
//! hardware approximations (MUFU, abs. error ≈ 2⁻²¹ on [−π, π]), whose exact results are not
//! published; this port uses the platform libm. The words, the layout, `u`, `v` and the stream
//! state are exact; each normal is expected within ~1e-6 of the GPU's. Unverified on hardware:
//! `tests/reference/cuda_noise.py` writes a fixture on a CUDA machine for `ltx parity` to check.

use half::{bf16, f16};

use super::philox::CurandPhilox;

/// Threads per block of torch's distribution kernels (`block_size_bound`).
const BLOCK_SIZE: u64 = 256;
/// Most words one `curand_*` call consumes (`max_generator_offsets_per_curand_call`).
const OFFSETS_PER_CALL: u64 = 4;
/// `CURAND_2POW32_INV`.
const TWO_POW_32_INV: f32 = 2.328_306_4e-10;
/// `CURAND_2POW32_INV_2PI`, the f32 product the CUDA headers spell.
const TWO_POW_32_INV_2PI: f32 = 2.328_306_4e-10 * 6.283_185_5;
/// `CURAND_2POW53_INV_DOUBLE`.
const TWO_POW_53_INV: f64 = 1.110_223_024_625_156_5e-16;

/// The two properties of the GPU that set torch's launch grid (`cudaDeviceProp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CudaLaunchLayout {
    /// `multiProcessorCount` (H100 SXM / H200: 132, A100: 108, RTX 4090: 128).
    pub multiprocessors: u32,
    /// `maxThreadsPerMultiProcessor` (2048 on sm_80 / sm_90, 1536 on sm_86 / sm_89).
    pub max_threads_per_multiprocessor: u32,
}

impl CudaLaunchLayout {
    /// H100 SXM and H200: 132 SMs, 2048 threads each.
    pub const H100: Self = Self {
        multiprocessors: 132,
        max_threads_per_multiprocessor: 2048,
    };

    /// A GPU with `multiprocessors` SMs of 2048 threads (every data-centre GPU since the A100).
    pub fn with_multiprocessors(multiprocessors: u32) -> Self {
        Self {
            multiprocessors,
            ..Self::H100
        }
    }

    /// `calc_execution_policy`: `(counter_offset, grid)` for `n ≥ 1` values, `unroll` per call.
    fn policy(&self, n: u64, unroll: u64) -> (u64, u64) {
        let blocks_per_sm = (self.max_threads_per_multiprocessor as u64 / BLOCK_SIZE).max(1);
        let grid = n
            .div_ceil(BLOCK_SIZE)
            .min(self.multiprocessors.max(1) as u64 * blocks_per_sm);
        let counter_offset = ((n - 1) / (BLOCK_SIZE * grid * unroll) + 1) * OFFSETS_PER_CALL;
        (counter_offset, grid)
    }
}

impl Default for CudaLaunchLayout {
    fn default() -> Self {
        Self::H100
    }
}

/// torch's `CUDAGeneratorImpl`: a seed and the Philox offset of the next kernel.
#[derive(Clone, Debug)]
pub struct CudaGenerator {
    seed: u64,
    offset: u64,
    layout: CudaLaunchLayout,
}

impl CudaGenerator {
    /// `torch.Generator("cuda").manual_seed(seed)` on a GPU of `layout`.
    pub fn new(seed: u64, layout: CudaLaunchLayout) -> Self {
        Self {
            seed,
            offset: 0,
            layout,
        }
    }

    /// `initial_seed()`.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The GPU layout the generator draws for.
    pub fn layout(&self) -> CudaLaunchLayout {
        self.layout
    }

    /// `get_offset()`: the Philox offset the next draw starts at.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// One `distribution_elementwise_grid_stride_kernel` launch of `n` values, `unroll` per
    /// call of `draw`.
    fn launch<T: Copy + Default, const U: usize>(
        &mut self,
        n: usize,
        draw: impl Fn(&mut CurandPhilox) -> [T; U],
    ) -> Vec<T> {
        let mut out = vec![T::default(); n];
        if n == 0 {
            return out;
        }
        let (increment, grid) = self.layout.policy(n as u64, U as u64);
        let offset = self.offset;
        self.offset += increment.div_ceil(4) * 4;
        let stride = (BLOCK_SIZE * grid) as usize;
        let step = stride * U;
        let rounded = (n - 1) / step * step + step;
        // threads at or past n write nothing
        for thread in 0..stride.min(n) {
            let mut state = CurandPhilox::new(self.seed, thread as u64, offset);
            for base in (thread..rounded).step_by(step) {
                let values = draw(&mut state);
                for (ii, v) in values.into_iter().enumerate() {
                    if let Some(slot) = out.get_mut(base + stride * ii) {
                        *slot = v;
                    }
                }
            }
        }
        out
    }

    /// `torch.randn(n, dtype=torch.float32, device="cuda", generator=g)`.
    pub fn normal_f32(&mut self, n: usize) -> Vec<f32> {
        self.launch(n, curand_normal4)
    }

    /// `torch.randn(n, dtype=torch.float64, device="cuda", generator=g)`.
    pub fn normal_f64(&mut self, n: usize) -> Vec<f64> {
        self.launch(n, curand_normal2_double)
    }

    /// `torch.randn(n, dtype=torch.bfloat16, device="cuda", generator=g)`: the f32 values rounded.
    pub fn normal_bf16(&mut self, n: usize) -> Vec<bf16> {
        self.normal_f32(n).into_iter().map(bf16::from_f32).collect()
    }

    /// `torch.randn(n, dtype=torch.float16, device="cuda", generator=g)`: the f32 values rounded.
    pub fn normal_f16(&mut self, n: usize) -> Vec<f16> {
        self.normal_f32(n).into_iter().map(f16::from_f32).collect()
    }
}

/// `_curand_box_muller(x, y)`: `(s·sin v, s·cos v)`.
fn box_muller(x: u32, y: u32) -> [f32; 2] {
    let u = (x as f32).mul_add(TWO_POW_32_INV, TWO_POW_32_INV / 2.0);
    let v = (y as f32).mul_add(TWO_POW_32_INV_2PI, TWO_POW_32_INV_2PI / 2.0);
    let s = (-2.0 * u.ln()).sqrt();
    [v.sin() * s, v.cos() * s]
}

/// `curand_normal4`: Box–Muller on both word pairs of one `curand4`.
fn curand_normal4(state: &mut CurandPhilox) -> [f32; 4] {
    let w = state.next_u32x4();
    let [a, b] = box_muller(w[0], w[1]);
    let [c, d] = box_muller(w[2], w[3]);
    [a, b, c, d]
}

/// `curand_normal2_double`: `_curand_box_muller_double` on one `curand4`.
fn curand_normal2_double(state: &mut CurandPhilox) -> [f64; 2] {
    let w = state.next_u32x4();
    let zx = w[0] as u64 ^ ((w[1] as u64) << (53 - 32));
    let zy = w[2] as u64 ^ ((w[3] as u64) << (53 - 32));
    let u = (zx as f64).mul_add(TWO_POW_53_INV, TWO_POW_53_INV / 2.0);
    let v = (zy as f64).mul_add(TWO_POW_53_INV * 2.0, TWO_POW_53_INV);
    let s = (-2.0 * u.ln()).sqrt();
    let angle = v * std::f64::consts::PI;
    [angle.sin() * s, angle.cos() * s]
}

#[cfg(test)]
mod tests {
    use super::super::philox::philox4x32_10;
    use super::*;

    #[test]
    fn launch_policy_follows_the_gpu() {
        let h100 = CudaLaunchLayout::H100;
        // small: one thread per 4 values is not used, grid = ⌈n/256⌉
        assert_eq!(h100.policy(10, 4), (4, 1));
        // latent-sized: grid capped at 132·8 = 1056 blocks
        assert_eq!(h100.policy(786_432, 4), (4, 1056));
        assert_eq!(h100.policy(4 * 270_336 + 1, 4), (8, 1056));
        let small_gpu = CudaLaunchLayout::with_multiprocessors(2);
        assert_eq!(small_gpu.policy(100_000, 4).1, 16);
    }

    #[test]
    fn values_come_from_each_threads_subsequence() {
        // 600 values: grid 3, S = 768 ≥ n, so value i is thread i's first normal
        let seed = 42;
        let mut g = CudaGenerator::new(seed, CudaLaunchLayout::H100);
        let v = g.normal_f32(600);
        for t in [0usize, 1, 599] {
            let w = philox4x32_10([0, 0, t as u32, 0], [seed as u32, 0]);
            assert_eq!(v[t], box_muller(w[0], w[1])[0]);
        }
        // the second draw starts 4 words later
        assert_eq!(g.offset(), 4);
        let next = g.normal_f32(1);
        let w = philox4x32_10([1, 0, 0, 0], [seed as u32, 0]);
        assert_eq!(next[0], box_muller(w[0], w[1])[0]);
        // bf16 is the f32 draw rounded
        let b = CudaGenerator::new(seed, CudaLaunchLayout::H100).normal_bf16(600);
        assert_eq!(b[17], bf16::from_f32(v[17]));
    }

    #[test]
    fn grid_stride_layout_and_moments() {
        // 2 SMs: S = 16·256 = 4096, n = 20_000 → each thread covers i, i+S, i+2S, i+3S, i+4S…
        let layout = CudaLaunchLayout::with_multiprocessors(2);
        let mut g = CudaGenerator::new(7, layout);
        let v = g.normal_f32(20_000);
        let mut s = CurandPhilox::new(7, 5, 0);
        let first = curand_normal4(&mut s);
        let second = curand_normal4(&mut s);
        assert_eq!([v[5], v[5 + 4096], v[5 + 2 * 4096], v[5 + 3 * 4096]], first);
        assert_eq!(v[5 + 4 * 4096], second[0]);
        assert_eq!(g.offset(), 8);
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / v.len() as f64;
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
        let d = CudaGenerator::new(7, layout).normal_f64(9000);
        assert!(d.iter().all(|x| x.is_finite() && x.abs() < 7.0));
    }
}

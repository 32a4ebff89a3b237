//! Port of `ltx_core/components/noisers.py`, plus the seeded noise the pipelines draw from.
//!
//! The reference's `GaussianNoiser` draws `torch.randn(*latent.shape, dtype=latent.dtype,
//! device=latent.device, generator=g)` from the pipeline's `torch.Generator(device).manual_seed(seed)`.
//! [`SeededNoise`] reproduces that draw for the generator [`NoiseKind`] names:
//!
//! - [`NoiseKind::TorchCpu`] (the default): torch's CPU generator, bit-exact (every dtype, every
//!   shape, successive draws; [`super::torch_random`]). The same seed gives the same noise as the
//!   reference run on the CPU, on every backend of ours (the values are made on the CPU).
//! - [`NoiseKind::TorchCuda`]: torch's CUDA generator on a GPU of the given launch layout: the
//!   same random words and layout as the reference run on that GPU, each value within ~1e-6 (the
//!   GPU's `__sincosf` is a hardware approximation).
//! - [`NoiseKind::Ltx`]: [`NoiseGenerator`], ltx-rs's own counter-based stream (below); it matches
//!   no torch generator.
//!
//! [`NoiseGenerator`]'s stream:
//!
//! - **Philox4x32-10** ([`philox4x32_10`]): key `(k0, k1) = (seed & 0xffff_ffff, seed >> 32)`;
//!   counter `(b & 0xffff_ffff, b >> 32, 0, 0)` for block index `b = 0, 1, 2, …`.
//! - **Box–Muller** in f64 on each block's output words `(w0, w1, w2, w3)`: for the pairs
//!   `(w0, w1)` and `(w2, w3)`, `u1 = (w_even + 1)/2³²` ∈ (0, 1], `u2 = w_odd/2³²` ∈ [0, 1),
//!   `r = √(−2 ln u1)`, `θ = 2π·u2`; the block gives `r₀cos θ₀, r₀sin θ₀, r₁cos θ₁, r₁sin θ₁`
//!   in that order, each rounded to f32 (round to nearest).
//! - **Stream**: normal `k` of a generator's stream is value `k mod 4` of block `k / 4`. Each
//!   draw of `n` values takes the next `⌈n/4⌉` whole blocks (the unused tail of the last block is
//!   skipped) and fills the tensor in row-major order; the result is cast to the requested dtype
//!   and moved to the requested device.
//!
//! `ln`, `cos` and `sin` come from the platform's libm; libms differ in the last f64 bit at most,
//! which changes an f32-rounded value only in the rarest cases.

use candle_core::{DType, Device, Shape, Tensor};

use super::torch_random::philox::philox4x32_10;
use super::torch_random::{CudaLaunchLayout, TorchGenerator};
use crate::error::{Error, Result};
use crate::types::LatentState;
use crate::utils::{check_broadcasts_to, check_same_shape, torch_lerp};

/// Seeded standard-normal noise, the same on every backend (see the module docs).
#[derive(Clone, Debug)]
pub struct NoiseGenerator {
    seed: u64,
    /// Index of the next unused 4-value block.
    block: u64,
}

impl NoiseGenerator {
    /// A generator at the start of `seed`'s stream.
    pub fn new(seed: u64) -> Self {
        Self { seed, block: 0 }
    }

    /// The seed this generator was made with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The next `n` standard normals of the stream (f32); advances by `⌈n/4⌉` blocks.
    pub fn normals(&mut self, n: usize) -> Vec<f32> {
        let key = [self.seed as u32, (self.seed >> 32) as u32];
        let mut out = Vec::with_capacity(n.next_multiple_of(4));
        let scale = 1.0 / 4_294_967_296.0;
        while out.len() < n {
            let b = self.block;
            self.block += 1;
            let w = philox4x32_10([b as u32, (b >> 32) as u32, 0, 0], key);
            for pair in [(w[0], w[1]), (w[2], w[3])] {
                let u1 = (pair.0 as f64 + 1.0) * scale;
                let u2 = pair.1 as f64 * scale;
                let r = (-2.0 * u1.ln()).sqrt();
                let theta = 2.0 * std::f64::consts::PI * u2;
                out.push((r * theta.cos()) as f32);
                out.push((r * theta.sin()) as f32);
            }
        }
        out.truncate(n);
        out
    }

    /// A tensor of the next standard normals of the stream, of `shape` (row-major), drawn on the
    /// CPU in f32 and then cast to `dtype` and moved to `device`: the values do not depend on the
    /// device.
    pub fn randn(
        &mut self,
        shape: impl Into<Shape>,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let shape: Shape = shape.into();
        let values = self.normals(shape.elem_count());
        Ok(Tensor::from_vec(values, shape, &Device::Cpu)?
            .to_dtype(dtype)?
            .to_device(device)?)
    }
}

/// Which generator seeded noise comes from (`ltx … --noise`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NoiseKind {
    /// `torch.Generator("cpu")`: the reference run on the CPU, bit for bit.
    #[default]
    TorchCpu,
    /// `torch.Generator("cuda")` on a GPU of this launch layout (values within ~1e-6).
    TorchCuda(CudaLaunchLayout),
    /// ltx-rs's own [`NoiseGenerator`].
    Ltx,
}

/// A seeded noise stream of some [`NoiseKind`]: what the pipelines' noiser and SDE samplers draw
/// from, in the reference's order and at its shapes and dtypes.
#[derive(Clone, Debug)]
pub enum SeededNoise {
    Torch(TorchGenerator),
    Ltx(NoiseGenerator),
}

impl SeededNoise {
    /// The generator `kind` names, seeded with `seed` (`manual_seed(seed)` for torch's; a
    /// negative Python seed is `seed + 2⁶⁴`).
    pub fn new(kind: NoiseKind, seed: u64) -> Self {
        match kind {
            NoiseKind::TorchCpu => Self::Torch(TorchGenerator::cpu(seed)),
            NoiseKind::TorchCuda(layout) => Self::Torch(TorchGenerator::cuda(seed, layout)),
            NoiseKind::Ltx => Self::Ltx(NoiseGenerator::new(seed)),
        }
    }

    /// The kind of generator this is.
    pub fn kind(&self) -> NoiseKind {
        match self {
            Self::Torch(TorchGenerator::Cpu(..)) => NoiseKind::TorchCpu,
            Self::Torch(TorchGenerator::Cuda(g)) => NoiseKind::TorchCuda(g.layout()),
            Self::Ltx(_) => NoiseKind::Ltx,
        }
    }

    /// The next standard normals of the stream as a tensor of `shape` and `dtype` on `device`.
    pub fn randn(
        &mut self,
        shape: impl Into<Shape>,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        match self {
            Self::Torch(g) => g.randn(shape, dtype, device),
            Self::Ltx(g) => g.randn(shape, dtype, device),
        }
    }
}

/// A NaN or infinite noise scale is an error.
fn check_noise_scale(noise_scale: f64) -> Result<()> {
    if !noise_scale.is_finite() {
        return Err(Error::InvalidInput(format!(
            "noise scale {noise_scale} must be a finite number"
        )));
    }
    Ok(())
}

/// Mixes Gaussian noise into a latent state where its denoise mask says so (the reference's
/// `GaussianNoiser`, with the noise passed in or drawn from a [`SeededNoise`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct GaussianNoiser;

impl GaussianNoiser {
    /// Reference 1.2.0's mix, in f32 and cast back to the latent's dtype:
    /// `x = lerp(latent, noise, noise_scale)`, then `latent ← lerp(clean_latent, x, denoise_mask)`
    /// (torch's `lerp`, [`torch_lerp`]). Tokens whose mask is 0 take their clean value, so a
    /// conditioning item only has to set the clean latent. (1.0.0 computed `noise·m + latent·(1 − m)`,
    /// `m = denoise_mask · noise_scale`, the same where latent and clean latent agree.)
    /// `noise` has the latent's shape and is taken in the latent's dtype (the reference draws it in
    /// that dtype); the mask broadcasts to the latent (e.g. `[B, T, 1]` for `[B, T, C]`). A NaN or
    /// infinite `noise_scale` is an error.
    pub fn apply(
        &self,
        state: &LatentState,
        noise: &Tensor,
        noise_scale: f64,
    ) -> Result<LatentState> {
        check_noise_scale(noise_scale)?;
        let latent = &state.latent;
        check_same_shape("noise", noise.dims(), latent.dims())?;
        check_same_shape("clean latent", state.clean_latent.dims(), latent.dims())?;
        check_broadcasts_to("denoise mask", state.denoise_mask.dims(), latent.dims())?;
        // the reference draws the noise in the latent's dtype, then widens both to f32
        let noise = noise.to_dtype(latent.dtype())?;
        // a Python float weight is rounded to f32 by the kernel
        let scale = Tensor::new(noise_scale as f32, latent.device())?;
        let noised = torch_lerp(latent, &noise, &scale)?;
        let mixed = torch_lerp(&state.clean_latent, &noised, &state.denoise_mask)?;
        Ok(LatentState {
            latent: mixed.to_dtype(latent.dtype())?,
            ..state.clone()
        })
    }

    /// [`Self::apply`] with the noise drawn from `generator` (the latent's shape and dtype, on its
    /// device), as the reference's noiser draws it.
    pub fn apply_seeded(
        &self,
        state: &LatentState,
        generator: &mut SeededNoise,
        noise_scale: f64,
    ) -> Result<LatentState> {
        check_noise_scale(noise_scale)?;
        let latent = &state.latent;
        let noise = generator.randn(latent.shape().clone(), latent.dtype(), latent.device())?;
        self.apply(state, &noise, noise_scale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn randn_tensor_matches_the_stream() -> Result<()> {
        let cpu = Device::Cpu;
        let want = NoiseGenerator::new(5).normals(6);
        let t = NoiseGenerator::new(5).randn((2, 3), DType::F32, &cpu)?;
        assert_eq!(t.dims(), [2, 3]);
        assert_eq!(t.flatten_all()?.to_vec1::<f32>()?, want);
        // the device argument only says where the values go: the same values on every device
        for dev in [Device::Cpu, Device::cuda_if_available(0)?] {
            let t = NoiseGenerator::new(5).randn((2, 3), DType::F32, &dev)?;
            assert_eq!(t.to_device(&cpu)?.flatten_all()?.to_vec1::<f32>()?, want);
        }
        // other dtypes are the f32 values cast
        let b = NoiseGenerator::new(5).randn(6, DType::BF16, &cpu)?;
        let cast: Vec<half::bf16> = want.iter().map(|&v| half::bf16::from_f32(v)).collect();
        assert_eq!(b.to_vec1::<half::bf16>()?, cast);
        // a draw of 6 skips the last 2 values of its second block
        let mut g = NoiseGenerator::new(5);
        g.randn(6, DType::F32, &cpu)?;
        let next = g.randn(4, DType::F32, &cpu)?.to_vec1::<f32>()?;
        assert_eq!(next, NoiseGenerator::new(5).normals(12)[8..]);
        Ok(())
    }

    #[test]
    fn deterministic_streams_and_moments() {
        let a = NoiseGenerator::new(42).normals(10);
        let b = NoiseGenerator::new(42).normals(10);
        assert_eq!(a, b);
        assert_ne!(a, NoiseGenerator::new(43).normals(10));
        // successive draws continue the stream (rounded to whole blocks)
        let mut g = NoiseGenerator::new(7);
        let first = g.normals(4);
        let second = g.normals(4);
        assert_eq!([first, second].concat(), NoiseGenerator::new(7).normals(8));
        let v = NoiseGenerator::new(1).normals(100_000);
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64;
        assert!(mean.abs() < 0.01, "{mean}");
        assert!((var - 1.0).abs() < 0.02, "{var}");
        assert!(v.iter().all(|x| x.is_finite()));
    }

    #[test]
    fn noiser_checks_inputs() -> Result<()> {
        let dev = Device::Cpu;
        let state = LatentState {
            latent: Tensor::ones((1, 3, 2), DType::F32, &dev)?,
            denoise_mask: Tensor::new(&[[[1f32], [0.5], [0.0]]], &dev)?,
            positions: Tensor::zeros((1, 3, 3, 2), DType::F32, &dev)?,
            clean_latent: Tensor::ones((1, 3, 2), DType::F32, &dev)?,
            attention_mask: None,
            keyframes_mask: None,
            frozen: false,
        };
        let noise = Tensor::zeros((1, 3, 2), DType::F32, &dev)?;
        let out = GaussianNoiser.apply(&state, &noise, 1.0)?;
        assert_eq!(
            out.latent.flatten_all()?.to_vec1::<f32>()?,
            [0.0, 0.0, 0.5, 0.5, 1.0, 1.0]
        );
        assert!(matches!(
            GaussianNoiser.apply(&state, &noise, f64::NAN),
            Err(Error::InvalidInput(_))
        ));
        let mut g = SeededNoise::new(NoiseKind::Ltx, 0);
        assert!(GaussianNoiser
            .apply_seeded(&state, &mut g, f64::NAN)
            .is_err());
        // seeded: mask 0 keeps the latent, mask 1 takes the noise
        for kind in [NoiseKind::Ltx, NoiseKind::TorchCpu] {
            let seeded =
                GaussianNoiser.apply_seeded(&state, &mut SeededNoise::new(kind, 3), 1.0)?;
            let got = seeded.latent.flatten_all()?.to_vec1::<f32>()?;
            let drawn = SeededNoise::new(kind, 3)
                .randn(6, DType::F32, &dev)?
                .to_vec1::<f32>()?;
            assert_eq!(got[..2], drawn[..2]);
            assert_eq!(got[4..], [1.0, 1.0]);
        }
        let bad = Tensor::zeros((1, 2, 2), DType::F32, &dev)?;
        assert!(matches!(
            GaussianNoiser.apply(&state, &bad, 1.0),
            Err(Error::TensorShape { .. })
        ));
        // a mask for another token count
        let wrong_mask = LatentState {
            denoise_mask: Tensor::ones((1, 4, 1), DType::F32, &dev)?,
            ..state.clone()
        };
        assert!(matches!(
            GaussianNoiser.apply(&wrong_mask, &noise, 1.0),
            Err(Error::TensorShape { .. })
        ));
        Ok(())
    }
}

//! Port of `ltx_core/components/noisers.py`, plus the seeded noise generator ltx-rs uses.
//!
//! torch's generator cannot be reproduced outside torch, so the noise is an input everywhere
//! (fixtures pass the reference's own draw). For generation, [`NoiseGenerator`] draws standard
//! normals from a seed, identically on every backend:
//!
//! - **Philox4x32-10** (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11):
//!   key = the seed's low / high 32 bits, counter = `(block_lo, block_hi, 0, 0)` where `block` is
//!   the 64-bit index of a 4-word block; rounds with multipliers `0xD2511F53`, `0xCD9E8D57` and key
//!   increments `0x9E3779B9`, `0xBB67AE85`.
//! - each block's words `(w0, w1, w2, w3)` give two normals by Box–Muller in f64:
//!   `u1 = (w0 + 1) / 2³²`, `u2 = w1 / 2³²`, `r = √(−2 ln u1)`, `n0 = r cos 2πu2`, `n1 = r sin 2πu2`;
//!   `w2`, `w3` give the next two the same way. Normals are rounded to f32.
//! - the generator keeps a running offset: normal `k` of the stream is the `k mod 4`-th value of
//!   block `k / 4`; a draw of `n` values consumes `n` rounded up to a multiple of 4.
//!
//! Values are produced on the CPU and then moved to the target device and dtype.

use candle_core::{DType, Device, Shape, Tensor};

use crate::error::{bad_shape, Error, Result};
use crate::types::LatentState;

/// Philox4x32-10 of `counter` under `key`.
fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    const M0: u64 = 0xD251_1F53;
    const M1: u64 = 0xCD9E_8D57;
    const W0: u32 = 0x9E37_79B9;
    const W1: u32 = 0xBB67_AE85;
    let (mut c, mut k) = (counter, key);
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
        let p0 = M0 * c[0] as u64;
        let p1 = M1 * c[2] as u64;
        c = [
            ((p1 >> 32) as u32) ^ c[1] ^ k[0],
            p1 as u32,
            ((p0 >> 32) as u32) ^ c[3] ^ k[1],
            p0 as u32,
        ];
    }
    c
}

/// Seeded standard-normal noise, the same on every backend (see the module docs).
#[derive(Clone, Debug)]
pub struct NoiseGenerator {
    seed: u64,
    /// Index of the next unused 4-value block.
    block: u64,
}

impl NoiseGenerator {
    pub fn new(seed: u64) -> Self {
        Self { seed, block: 0 }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The next `n` standard normals (f32).
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

    /// A tensor of standard normals of `shape`, drawn on the CPU and moved to `device` / `dtype`.
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

/// Mixes noise into a latent state where its denoise mask says so.
#[derive(Clone, Copy, Debug, Default)]
pub struct GaussianNoiser;

impl GaussianNoiser {
    /// `latent ← noise·m + latent·(1 − m)` with `m = denoise_mask · noise_scale` (computed in f32,
    /// cast back to the latent's dtype); `noise` has the latent's shape.
    pub fn apply(
        &self,
        state: &LatentState,
        noise: &Tensor,
        noise_scale: f64,
    ) -> Result<LatentState> {
        if !noise_scale.is_finite() {
            return Err(Error::InvalidInput(format!(
                "noise scale {noise_scale} must be a finite number"
            )));
        }
        if noise.dims() != state.latent.dims() {
            return Err(bad_shape(
                "noise",
                noise.dims(),
                format!("{:?} (the latent's shape)", state.latent.dims()),
            ));
        }
        let (md, ld) = (state.denoise_mask.dims(), state.latent.dims());
        if md.len() != ld.len() || md.iter().zip(ld).any(|(m, l)| *m != 1 && m != l) {
            return Err(bad_shape(
                "denoise mask",
                md,
                format!("broadcastable to the latent's {ld:?}"),
            ));
        }
        let mask = state.denoise_mask.to_dtype(DType::F32)?;
        let m = (mask * noise_scale)?;
        let noisy = noise.to_dtype(DType::F32)?.broadcast_mul(&m)?;
        let kept = state
            .latent
            .to_dtype(DType::F32)?
            .broadcast_mul(&m.affine(-1.0, 1.0)?)?;
        Ok(LatentState {
            latent: (noisy + kept)?.to_dtype(state.latent.dtype())?,
            ..state.clone()
        })
    }

    /// [`Self::apply`] with noise drawn from `generator` in the latent's dtype.
    pub fn apply_seeded(
        &self,
        state: &LatentState,
        generator: &mut NoiseGenerator,
        noise_scale: f64,
    ) -> Result<LatentState> {
        let noise = generator.randn(
            state.latent.shape().clone(),
            state.latent.dtype(),
            state.latent.device(),
        )?;
        self.apply(state, &noise, noise_scale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn philox_known_answer() {
        // Random123's kat_vectors: philox4x32 10 rounds, counter 0, key 0
        assert_eq!(
            philox4x32_10([0, 0, 0, 0], [0, 0]),
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
        );
        assert_eq!(
            philox4x32_10([0xffff_ffff; 4], [0xffff_ffff; 2]),
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]
        );
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
        };
        let noise = Tensor::zeros((1, 3, 2), DType::F32, &dev)?;
        let out = GaussianNoiser.apply(&state, &noise, 1.0)?;
        assert_eq!(
            out.latent.flatten_all()?.to_vec1::<f32>()?,
            [0.0, 0.0, 0.5, 0.5, 1.0, 1.0]
        );
        assert!(GaussianNoiser.apply(&state, &noise, f64::NAN).is_err());
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

//! Port of `ltx_core/components/patchifiers.py`: latent grids <-> token sequences, and the
//! positions (patch bounds) each token carries into the transformer's RoPE.

use candle_core::{DType, Device, Tensor};

use crate::error::{bad_shape, Error, Result};
use crate::types::{AudioLatentShape, SpatioTemporalScaleFactors, VideoLatentShape};

/// Video latents `[B, C, F, H, W]` <-> tokens `[B, F·(H/p)·(W/p), C·p·p]` (patch `1 × p × p`).
///
/// The token order is frame-major, then row, then column; a token's features are
/// channel-major, then the patch row, then the patch column (`b c (f 1) (h p) (w q) -> b (f h w)
/// (c 1 p q)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VideoLatentPatchifier {
    patch_size: usize,
}

impl VideoLatentPatchifier {
    pub fn new(patch_size: usize) -> Result<Self> {
        if patch_size == 0 {
            return Err(Error::InvalidConfig("patch size must be at least 1".into()));
        }
        Ok(Self { patch_size })
    }

    /// `(temporal, height, width)` patch size.
    pub fn patch_size(&self) -> (usize, usize, usize) {
        (1, self.patch_size, self.patch_size)
    }

    pub fn get_token_count(&self, shape: &VideoLatentShape) -> usize {
        shape.frames * shape.height * shape.width / (self.patch_size * self.patch_size)
    }

    /// `[B, C, F, H, W]` -> `[B, tokens, C·p·p]`.
    pub fn patchify(&self, latents: &Tensor) -> Result<Tensor> {
        let p = self.patch_size;
        let dims = latents.dims();
        let &[b, c, f, h, w] = dims else {
            return Err(bad_shape("video latent", dims, "[B, C, F, H, W]"));
        };
        if h % p != 0 || w % p != 0 {
            return Err(bad_shape(
                "video latent",
                dims,
                format!("height and width divisible by the patch size {p}"),
            ));
        }
        if p == 1 {
            // [B, C, N] -> [B, N, C]
            return Ok(latents
                .reshape((b, c, f * h * w))?
                .transpose(1, 2)?
                .contiguous()?);
        }
        let (hp, wp) = (h / p, w / p);
        // [B, C, F, H', p, W', q] -> [B, F, H', W', C, p, q]
        let x = latents
            .reshape(vec![b, c, f, hp, p, wp, p])?
            .permute(vec![0, 2, 3, 5, 1, 4, 6])?
            .contiguous()?;
        Ok(x.reshape((b, f * hp * wp, c * p * p))?)
    }

    /// `[B, tokens, C·p·p]` -> `[B, C, F, H, W]` for the grid `output_shape`.
    pub fn unpatchify(&self, latents: &Tensor, output_shape: &VideoLatentShape) -> Result<Tensor> {
        let p = self.patch_size;
        let dims = latents.dims();
        let (f, hp, wp) = (
            output_shape.frames,
            output_shape.height / p,
            output_shape.width / p,
        );
        let &[b, n, d] = dims else {
            return Err(bad_shape("video tokens", dims, "[B, tokens, features]"));
        };
        if n != f * hp * wp || d % (p * p) != 0 {
            return Err(bad_shape(
                "video tokens",
                dims,
                format!(
                    "[B, {}, C·{}] for the grid {:?}",
                    f * hp * wp,
                    p * p,
                    output_shape.dims()
                ),
            ));
        }
        let c = d / (p * p);
        if p == 1 {
            return Ok(latents
                .transpose(1, 2)?
                .contiguous()?
                .reshape((b, c, f, hp, wp))?);
        }
        // [B, F, H', W', C, p, q] -> [B, C, F, H', p, W', q]
        let x = latents
            .reshape(vec![b, f, hp, wp, c, p, p])?
            .permute(vec![0, 4, 1, 2, 5, 3, 6])?
            .contiguous()?;
        Ok(x.reshape((b, c, f, hp * p, wp * p))?)
    }

    /// Per-token `[start, end)` bounds in latent-grid units: `[B, 3, tokens, 2]` (i64), axis 1 =
    /// (frame, row, column).
    pub fn get_patch_grid_bounds(
        &self,
        output_shape: &VideoLatentShape,
        device: &Device,
    ) -> Result<Tensor> {
        let (pt, ph, pw) = self.patch_size();
        let s = output_shape;
        if s.batch == 0 || s.frames == 0 || s.height == 0 || s.width == 0 {
            return Err(Error::InvalidInput(format!(
                "latent grid {:?} has an empty dimension",
                s.dims()
            )));
        }
        let starts = |n: usize, step: usize| (0..n).step_by(step).collect::<Vec<_>>();
        let (fs, hs, ws) = (
            starts(s.frames, pt),
            starts(s.height, ph),
            starts(s.width, pw),
        );
        let n = fs.len() * hs.len() * ws.len();
        let mut data = vec![0i64; 3 * n * 2];
        let mut i = 0;
        for &f in &fs {
            for &h in &hs {
                for &w in &ws {
                    for (axis, (start, size)) in [(f, pt), (h, ph), (w, pw)].into_iter().enumerate()
                    {
                        data[(axis * n + i) * 2] = start as i64;
                        data[(axis * n + i) * 2 + 1] = (start + size) as i64;
                    }
                    i += 1;
                }
            }
        }
        let one = Tensor::from_vec(data, (1, 3, n, 2), device)?;
        Ok(one.repeat((s.batch, 1, 1, 1))?)
    }
}

/// Latent-grid bounds `[B, 3, N, 2]` -> pixel-space bounds: each axis times its VAE factor (the
/// reference indexes the factors as `(time, width, height)` for axes (frame, row, column)). With
/// `causal_fix`, frame bounds become `max(t + 1 − time_factor, 0)`: the causal VAE maps latent
/// frame 0 to the single pixel frame 0. Keeps the input dtype (i64 or float).
pub fn get_pixel_coords(
    latent_coords: &Tensor,
    scale: SpatioTemporalScaleFactors,
    causal_fix: bool,
) -> Result<Tensor> {
    let dims = latent_coords.dims();
    if dims.len() != 4 || dims[1] != 3 || dims[3] != 2 {
        return Err(bad_shape("latent coordinates", dims, "[B, 3, tokens, 2]"));
    }
    let dtype = latent_coords.dtype();
    let device = latent_coords.device();
    let factors = scale.as_array();
    let mut axes = Vec::with_capacity(3);
    for (axis, &factor) in factors.iter().enumerate() {
        let mut a = latent_coords.narrow(1, axis, 1)?;
        a = scale_axis(&a, factor as f64)?;
        if axis == 0 && causal_fix {
            let shift = Tensor::full(1.0 - factor as f64, (), device)?.to_dtype(dtype)?;
            let zero = Tensor::zeros((), dtype, device)?;
            a = a.broadcast_add(&shift)?.broadcast_maximum(&zero)?;
        }
        axes.push(a);
    }
    Ok(Tensor::cat(&axes, 1)?)
}

fn scale_axis(a: &Tensor, factor: f64) -> Result<Tensor> {
    let f = Tensor::full(factor, (), a.device())?.to_dtype(a.dtype())?;
    Ok(a.broadcast_mul(&f)?)
}

/// Audio latents `[B, C, T, mel]` <-> tokens `[B, T, C·mel]`, with per-token time bounds in
/// seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AudioPatchifier {
    pub patch_size: usize,
    pub sample_rate: usize,
    pub hop_length: usize,
    pub audio_latent_downsample_factor: usize,
    /// Shift timestamps so a latent frame is stamped with its first fully available sample.
    pub is_causal: bool,
    /// Offset added to the latent indices (windows cut from a longer sequence).
    pub shift: usize,
}

impl AudioPatchifier {
    /// The reference defaults: 16 kHz, hop 160, latent downsample 4, causal, no shift.
    pub fn new(patch_size: usize) -> Self {
        Self {
            patch_size,
            sample_rate: 16000,
            hop_length: 160,
            audio_latent_downsample_factor: 4,
            is_causal: true,
            shift: 0,
        }
    }

    pub fn patch_size(&self) -> (usize, usize, usize) {
        (1, self.patch_size, self.patch_size)
    }

    pub fn get_token_count(&self, shape: &AudioLatentShape) -> usize {
        shape.frames
    }

    /// `[B, C, T, F]` -> `[B, T, C·F]`.
    pub fn patchify(&self, latents: &Tensor) -> Result<Tensor> {
        let dims = latents.dims();
        let &[b, c, t, f] = dims else {
            return Err(bad_shape("audio latent", dims, "[B, C, T, mel_bins]"));
        };
        Ok(latents
            .permute((0, 2, 1, 3))?
            .contiguous()?
            .reshape((b, t, c * f))?)
    }

    /// `[B, T, C·F]` -> `[B, C, T, F]`.
    pub fn unpatchify(&self, latents: &Tensor, output_shape: &AudioLatentShape) -> Result<Tensor> {
        let dims = latents.dims();
        let (c, f) = (output_shape.channels, output_shape.mel_bins);
        let &[b, t, d] = dims else {
            return Err(bad_shape("audio tokens", dims, "[B, T, channels·mel_bins]"));
        };
        if d != c * f {
            return Err(bad_shape(
                "audio tokens",
                dims,
                format!("[B, T, {}] ({c} channels × {f} mel bins)", c * f),
            ));
        }
        Ok(latents
            .reshape((b, t, c, f))?
            .permute((0, 2, 1, 3))?
            .contiguous()?)
    }

    /// Start time in seconds of latent frames `start..end`, in the reference's f32 arithmetic:
    /// `frame·downsample`, causal `max(· + 1 − downsample, 0)`, `· hop`, `/ rate`.
    fn latent_times(&self, start: usize, end: usize) -> Vec<f32> {
        let ds = self.audio_latent_downsample_factor as f32;
        (start..end)
            .map(|i| {
                let mut mel = i as f32 * ds;
                if self.is_causal {
                    mel = (mel + 1.0 - ds).max(0.0);
                }
                mel * self.hop_length as f32 / self.sample_rate as f32
            })
            .collect()
    }

    /// Per-token `[start, end)` times in seconds: `[B, 1, T, 2]` (f32).
    pub fn get_patch_grid_bounds(
        &self,
        output_shape: &AudioLatentShape,
        device: &Device,
    ) -> Result<Tensor> {
        let t = output_shape.frames;
        let starts = self.latent_times(self.shift, t + self.shift);
        let ends = self.latent_times(self.shift + 1, t + self.shift + 1);
        let data: Vec<f32> = starts
            .iter()
            .zip(&ends)
            .flat_map(|(&s, &e)| [s, e])
            .collect();
        let one = Tensor::from_vec(data, (1, 1, t, 2), device)?;
        Ok(one
            .repeat((output_shape.batch, 1, 1, 1))?
            .to_dtype(DType::F32)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_patchify_roundtrip_and_order() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::arange(0f32, 2. * 3. * 2. * 4. * 6., &dev)?.reshape((2, 3, 2, 4, 6))?;
        for p in [1, 2] {
            let pf = VideoLatentPatchifier::new(p)?;
            let shape = VideoLatentShape::from_dims(x.dims())?;
            let t = pf.patchify(&x)?;
            assert_eq!(t.dims(), &[2, 2 * 4 * 6 / (p * p), 3 * p * p]);
            let back = pf.unpatchify(&t, &shape)?;
            let diff = (back - &x)?.abs()?.sum_all()?.to_scalar::<f32>()?;
            assert_eq!(diff, 0.0);
        }
        // p = 2: token 0 holds channel-major 2x2 patches of the top-left corner
        let t = VideoLatentPatchifier::new(2)?.patchify(&x)?;
        let tok0 = t.get(0)?.get(0)?.to_vec1::<f32>()?;
        assert_eq!(&tok0[..4], &[0., 1., 6., 7.]);
        Ok(())
    }

    #[test]
    fn bad_shapes_are_errors() {
        let dev = Device::Cpu;
        let pf = VideoLatentPatchifier::new(2).unwrap();
        let x = Tensor::zeros((1, 2, 1, 3, 4), DType::F32, &dev).unwrap();
        assert!(matches!(pf.patchify(&x), Err(Error::TensorShape { .. })));
        let t = Tensor::zeros((1, 5, 8), DType::F32, &dev).unwrap();
        let shape = VideoLatentShape::from_dims(&[1, 2, 1, 4, 4]).unwrap();
        assert!(pf.unpatchify(&t, &shape).is_err());
        let ap = AudioPatchifier::new(1);
        let a = Tensor::zeros((1, 6, 8), DType::F32, &dev).unwrap();
        let ashape = AudioLatentShape::from_dims(&[1, 8, 6, 16]).unwrap();
        assert!(matches!(
            ap.unpatchify(&a, &ashape),
            Err(Error::TensorShape { .. })
        ));
        assert!(VideoLatentPatchifier::new(0).is_err());
    }

    #[test]
    fn audio_times_are_causal() -> Result<()> {
        let ap = AudioPatchifier::new(1);
        let shape = AudioLatentShape::from_dims(&[1, 8, 3, 16])?;
        let b = ap.get_patch_grid_bounds(&shape, &Device::Cpu)?;
        let v = b.flatten_all()?.to_vec1::<f32>()?;
        // frame 0: [0, (4+1-4)*0.01]; frame 1: [0.01, 0.05]
        assert_eq!(v[0], 0.0);
        assert!((v[1] - 0.01).abs() < 1e-7 && (v[2] - 0.01).abs() < 1e-7);
        assert!((v[3] - 0.05).abs() < 1e-7);
        Ok(())
    }
}

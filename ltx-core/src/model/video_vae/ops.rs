//! Port of `ltx_core/model/video_vae/ops.py`: patchify / unpatchify and the latent statistics.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

/// Space-to-depth over `[B, C, F, H, W]` with patch `p` (time patch 1): `[B, C·p², F, H/p, W/p]`.
/// Channel order is LTX's `(c, r, q)` — the width offset `r` before the height offset `q`.
pub fn patchify(x: &Tensor, p: usize) -> Result<Tensor> {
    if p == 1 {
        return Ok(x.clone());
    }
    let (b, c, f, h, w) = x.dims5()?;
    if h % p != 0 || w % p != 0 {
        candle_core::bail!("patchify: {h}x{w} is not divisible by the patch size {p}")
    }
    x.reshape(vec![b, c, f, h / p, p, w / p, p])?
        .permute(vec![0, 1, 6, 4, 2, 3, 5])?
        .reshape((b, c * p * p, f, h / p, w / p))
}

/// Inverse of [`patchify`]: `[B, C·p², F, H, W]` → `[B, C, F, H·p, W·p]`.
pub fn unpatchify(x: &Tensor, p: usize) -> Result<Tensor> {
    if p == 1 {
        return Ok(x.clone());
    }
    let (b, cpp, f, h, w) = x.dims5()?;
    if cpp % (p * p) != 0 {
        candle_core::bail!("unpatchify: {cpp} channels are not divisible by {}", p * p)
    }
    let c = cpp / (p * p);
    x.reshape(vec![b, c, p, p, f, h, w])?
        .permute(vec![0, 1, 4, 5, 3, 6, 2])?
        .reshape((b, c, f, h * p, w * p))
}

/// Dataset statistics of the latent space (`per_channel_statistics.{std,mean}-of-means`).
#[derive(Clone, Debug)]
pub struct PerChannelStatistics {
    std_of_means: Tensor,
    mean_of_means: Tensor,
}

impl PerChannelStatistics {
    pub fn new(latent_channels: usize, vb: VarBuilder) -> Result<Self> {
        let view = |t: Tensor| t.reshape((1, latent_channels, 1, 1, 1));
        Ok(Self {
            std_of_means: view(vb.get(latent_channels, "std-of-means")?)?,
            mean_of_means: view(vb.get(latent_channels, "mean-of-means")?)?,
        })
    }

    /// `x · std + mean` over `[B, C, F, H, W]`.
    pub fn un_normalize(&self, x: &Tensor) -> Result<Tensor> {
        let dt = x.dtype();
        x.broadcast_mul(&self.std_of_means.to_dtype(dt)?)?
            .broadcast_add(&self.mean_of_means.to_dtype(dt)?)
    }

    /// `(x − mean) / std` over `[B, C, F, H, W]`.
    pub fn normalize(&self, x: &Tensor) -> Result<Tensor> {
        let dt = x.dtype();
        x.broadcast_sub(&self.mean_of_means.to_dtype(dt)?)?
            .broadcast_div(&self.std_of_means.to_dtype(dt)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, IndexOp};

    #[test]
    fn patchify_channel_order_and_roundtrip() {
        let dev = Device::Cpu;
        let x = Tensor::arange(0f32, (2 * 2 * 8 * 8) as f32, &dev)
            .unwrap()
            .reshape((1, 2, 2, 8, 8))
            .unwrap();
        let y = patchify(&x, 4).unwrap();
        assert_eq!(y.dims(), &[1, 32, 2, 2, 2]);
        // channel c*16 + r*4 + q holds pixel (h*4 + q, w*4 + r): check c=1, r=2 (width), q=1 (height).
        let got = y
            .i((0, 16 + 2 * 4 + 1, 1, 1, 0))
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let want = x
            .i((0, 1, 1, 4 + 1, 2))
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(got, want);
        let back = unpatchify(&y, 4).unwrap();
        let diff = (back - &x).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
    }
}

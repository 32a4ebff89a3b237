//! Port of `ltx_core/model/upsampler/spatial_rational_resampler.py`.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::blur_downsample::BlurDownsample;
use super::model::ConvNd;
use super::pixel_shuffle::pixel_shuffle_nd;

/// Per-frame rational spatial scaling: conv to `num²·C` channels, pixel shuffle up by `num`, blur
/// and stride down by `den`.
pub struct SpatialRationalResampler {
    conv: ConvNd,
    num: usize,
    blur_down: BlurDownsample,
}

impl SpatialRationalResampler {
    pub fn new(mid_channels: usize, num: usize, den: usize, vb: VarBuilder) -> Result<Self> {
        let mut blur_down = BlurDownsample::new(den, 5, vb.device())?;
        // released files carry the (binomial) filter as a buffer; use it when present
        if vb.contains_tensor("blur_down.kernel") {
            blur_down = blur_down.with_kernel(vb.get((1, 1, 5, 5), "blur_down.kernel")?)?;
        }
        Ok(Self {
            conv: ConvNd::new(2, mid_channels, num * num * mid_channels, vb.pp("conv"))?,
            num,
            blur_down,
        })
    }

    /// `[B, C, F, H, W]` -> `[B, C, F, H·num/den, W·num/den]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, _, f, _, _) = x.dims5()?;
        let y = self.conv.forward_per_frame(x)?;
        let (_, c, _, h, w) = y.dims5()?;
        let y = y.permute((0, 2, 1, 3, 4))?.reshape((b * f, c, h, w))?;
        let y = pixel_shuffle_nd(&y, 2, (self.num, self.num, 1))?;
        let y = self.blur_down.forward(&y)?;
        let (_, c2, h2, w2) = y.dims4()?;
        y.reshape((b, f, c2, h2, w2))?
            .permute((0, 2, 1, 3, 4))?
            .contiguous()
    }
}

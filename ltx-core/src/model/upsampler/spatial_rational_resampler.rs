//! Port of `ltx_core/model/upsampler/spatial_rational_resampler.py`.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Conv2d, VarBuilder};

use super::blur_downsample::BlurDownsample;
use super::pixel_shuffle::pixel_shuffle_nd;

/// Per-frame rational spatial scaling: conv to `num²·C` channels, pixel shuffle up by `num`, blur
/// and stride down by `den`.
#[derive(Clone, Debug)]
pub struct SpatialRationalResampler {
    conv: Conv2d,
    num: usize,
    blur_down: BlurDownsample,
}

impl SpatialRationalResampler {
    pub fn new(mid_channels: usize, num: usize, den: usize, vb: VarBuilder) -> Result<Self> {
        let cfg = candle_nn::Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let mut blur_down = BlurDownsample::new(den, 5, vb.device())?;
        // released files carry the (binomial) filter as a buffer; use it when present
        if vb.contains_tensor("blur_down.kernel") {
            blur_down = blur_down.with_kernel(vb.get((1, 1, 5, 5), "blur_down.kernel")?)?;
        }
        Ok(Self {
            conv: candle_nn::conv2d(
                mid_channels,
                num * num * mid_channels,
                3,
                cfg,
                vb.pp("conv"),
            )?,
            num,
            blur_down,
        })
    }

    /// `[B, C, F, H, W]` -> `[B, C, F, H·num/den, W·num/den]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, f, h, w) = x.dims5()?;
        let x2 = x.permute((0, 2, 1, 3, 4))?.reshape((b * f, c, h, w))?;
        let y = self.conv.forward(&x2)?;
        let y = pixel_shuffle_nd(&y, 2, (self.num, self.num, 1))?;
        let y = self.blur_down.forward(&y)?;
        let (_, c2, h2, w2) = y.dims4()?;
        y.reshape((b, f, c2, h2, w2))?
            .permute((0, 2, 1, 3, 4))?
            .contiguous()
    }
}

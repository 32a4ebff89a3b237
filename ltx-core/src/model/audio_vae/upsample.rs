//! Port of `ltx_core/model/audio_vae/upsample.py`.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::causal_conv_2d::CausalConv2d;
use super::model_configurator::CausalityAxis;

/// Nearest ×2 on both axes, a causal 3×3 conv, then the first row (time) / column dropped so a
/// causal length `n` becomes `2n − 1`.
pub struct Upsample {
    conv: CausalConv2d,
    axis: CausalityAxis,
}

impl Upsample {
    pub fn new(channels: usize, axis: CausalityAxis, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            conv: CausalConv2d::new(channels, channels, 3, axis, vb.pp("conv"))?,
            axis,
        })
    }
}

impl Module for Upsample {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let x = x.upsample_nearest2d(h * 2, w * 2)?;
        let x = self.conv.forward(&x)?;
        match self.axis {
            CausalityAxis::Height => x.narrow(2, 1, x.dim(2)? - 1),
            CausalityAxis::Width => x.narrow(3, 1, x.dim(3)? - 1),
            CausalityAxis::None | CausalityAxis::WidthCompatibility => Ok(x),
        }
    }
}

//! Port of `ltx_core/model/audio_vae/downsample.py`.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, VarBuilder};

use super::causal_conv_2d::pad2d;
use super::model_configurator::CausalityAxis;

/// Asymmetric zero padding then a 3×3 stride-2 conv (keys `conv.*`).
pub struct Downsample {
    conv: Conv2d,
    pad: (usize, usize, usize, usize),
}

impl Downsample {
    pub fn new(channels: usize, axis: CausalityAxis, vb: VarBuilder) -> Result<Self> {
        let pad = match axis {
            CausalityAxis::None => (0, 1, 0, 1),
            CausalityAxis::Width => (2, 0, 0, 1),
            CausalityAxis::Height => (0, 1, 2, 0),
            CausalityAxis::WidthCompatibility => (1, 0, 0, 1),
        };
        let cfg = Conv2dConfig {
            stride: 2,
            ..Default::default()
        };
        Ok(Self {
            conv: candle_nn::conv2d(channels, channels, 3, cfg, vb.pp("conv"))?,
            pad,
        })
    }
}

impl Module for Downsample {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.conv.forward(&pad2d(x, self.pad)?)
    }
}

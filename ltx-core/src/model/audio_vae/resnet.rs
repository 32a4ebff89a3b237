//! Port of the audio VAE's `ResnetBlock` (`ltx_core/model/audio_vae/resnet.py`; the vocoder's
//! `ResBlock1/2` come with the vocoder).

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::causal_conv_2d::CausalConv2d;
use super::model_configurator::{CausalityAxis, NormType};
use crate::model::common::normalization::{GroupNorm, PixelNorm};

/// GroupNorm(32, eps 1e-6, affine) or PixelNorm(eps 1e-6) over the channels.
pub enum Norm {
    Group(GroupNorm),
    Pixel(PixelNorm),
}

impl Norm {
    pub fn new(kind: NormType, channels: usize, vb: VarBuilder) -> Result<Self> {
        Ok(match kind {
            NormType::Group => Norm::Group(GroupNorm::new(32, channels, 1e-6, vb)?),
            NormType::Pixel => Norm::Pixel(PixelNorm::new(1e-6)),
        })
    }
}

impl Module for Norm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Norm::Group(g) => g.forward(x),
            Norm::Pixel(p) => p.forward(x),
        }
    }
}

/// `norm → SiLU → conv → norm → SiLU → conv`, plus the input (through a 1×1 `nin_shortcut` when
/// the width changes).
pub struct ResnetBlock {
    norm1: Norm,
    conv1: CausalConv2d,
    norm2: Norm,
    conv2: CausalConv2d,
    nin_shortcut: Option<CausalConv2d>,
}

impl ResnetBlock {
    pub fn new(
        cin: usize,
        cout: usize,
        norm: NormType,
        axis: CausalityAxis,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            norm1: Norm::new(norm, cin, vb.pp("norm1"))?,
            conv1: CausalConv2d::new(cin, cout, 3, axis, vb.pp("conv1"))?,
            norm2: Norm::new(norm, cout, vb.pp("norm2"))?,
            conv2: CausalConv2d::new(cout, cout, 3, axis, vb.pp("conv2"))?,
            nin_shortcut: if cin != cout {
                Some(CausalConv2d::new(
                    cin,
                    cout,
                    1,
                    axis,
                    vb.pp("nin_shortcut"),
                )?)
            } else {
                None
            },
        })
    }
}

impl Module for ResnetBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.conv1.forward(&self.norm1.forward(x)?.silu()?)?;
        let h = self.conv2.forward(&self.norm2.forward(&h)?.silu()?)?;
        match &self.nin_shortcut {
            Some(s) => s.forward(x)? + h,
            None => x + h,
        }
    }
}

//! Port of `ltx_core/model/upsampler/res_block.py`.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::model::ConvNd;
use crate::model::common::normalization::GroupNorm;

/// `conv → GroupNorm(32) → SiLU → conv → GroupNorm(32) → SiLU(· + x)`.
pub struct ResBlock {
    conv1: ConvNd,
    norm1: GroupNorm,
    conv2: ConvNd,
    norm2: GroupNorm,
}

impl ResBlock {
    pub fn new(channels: usize, dims: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            conv1: ConvNd::new(dims, channels, channels, vb.pp("conv1"))?,
            norm1: GroupNorm::new(32, channels, 1e-5, vb.pp("norm1"))?,
            conv2: ConvNd::new(dims, channels, channels, vb.pp("conv2"))?,
            norm2: GroupNorm::new(32, channels, 1e-5, vb.pp("norm2"))?,
        })
    }
}

impl Module for ResBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.norm1.forward(&self.conv1.forward(x)?)?.silu()?;
        let h = self.norm2.forward(&self.conv2.forward(&h)?)?;
        (h + x)?.silu()
    }
}

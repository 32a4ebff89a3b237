//! Port of `ltx_core/model/common/normalization.py`: PixelNorm and GroupNorm over `[B, C, ...]`.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

/// Per-location RMS normalisation over the channel axis (dim 1), no weight:
/// `x / sqrt(mean_c(x²) + eps)`.
#[derive(Clone, Copy, Debug)]
pub struct PixelNorm {
    eps: f64,
}

impl PixelNorm {
    /// The VAE's default (`PixelNorm()` in the reference) uses eps 1e-8.
    pub const DEFAULT_EPS: f64 = 1e-8;

    pub fn new(eps: f64) -> Self {
        Self { eps }
    }

    pub fn eps(&self) -> f64 {
        self.eps
    }
}

impl Default for PixelNorm {
    fn default() -> Self {
        Self::new(Self::DEFAULT_EPS)
    }
}

impl Module for PixelNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let rms = (x.sqr()?.mean_keepdim(1)? + self.eps)?.sqrt()?;
        x.broadcast_div(&rms)
    }
}

/// `torch.nn.GroupNorm` (affine) over `[B, C, ...]`, statistics computed in f32.
#[derive(Clone, Debug)]
pub struct GroupNorm {
    weight: Tensor,
    bias: Tensor,
    groups: usize,
    eps: f64,
}

impl GroupNorm {
    pub fn new(groups: usize, channels: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        if groups == 0 || channels % groups != 0 {
            candle_core::bail!(
                "GroupNorm: {channels} channels are not divisible into {groups} groups"
            )
        }
        Ok(Self {
            weight: vb.get(channels, "weight")?,
            bias: vb.get(channels, "bias")?,
            groups,
            eps,
        })
    }
}

impl Module for GroupNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let (b, c) = (dims[0], dims[1]);
        let dtype = x.dtype();
        let xg = x.to_dtype(DType::F32)?.reshape((b, self.groups, ()))?;
        let mean = xg.mean_keepdim(2)?;
        let centered = xg.broadcast_sub(&mean)?;
        let var = centered.sqr()?.mean_keepdim(2)?;
        let normed = centered.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        let mut shape = vec![1, c];
        shape.resize(dims.len(), 1);
        let w = self
            .weight
            .to_dtype(DType::F32)?
            .reshape(shape.as_slice())?;
        let bias = self.bias.to_dtype(DType::F32)?.reshape(shape.as_slice())?;
        normed
            .reshape(dims.as_slice())?
            .broadcast_mul(&w)?
            .broadcast_add(&bias)?
            .to_dtype(dtype)
    }
}

/// Which normalisation a VAE layer uses (`norm_layer` in the config).
#[derive(Clone, Debug)]
pub enum Norm {
    Pixel(PixelNorm),
    Group(GroupNorm),
}

impl Module for Norm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Pixel(n) => n.forward(x),
            Self::Group(n) => n.forward(x),
        }
    }
}

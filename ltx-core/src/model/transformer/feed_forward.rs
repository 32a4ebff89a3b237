//! Port of `ltx_core/model/transformer/feed_forward.py` and `gelu_approx.py`.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::quantization::{Linear, LinearSource};

use crate::kernels::activations::gelu_tanh;

/// `Linear(dim → 4·dim)` → tanh-GELU → `Linear(4·dim → dim_out)` (keys `net.0.proj`, `net.2`),
/// both with or both without biases.
#[derive(Clone, Debug)]
pub struct FeedForward {
    proj_in: Linear,
    proj_out: Linear,
}

impl FeedForward {
    pub fn new(
        dim: usize,
        dim_out: usize,
        mult: usize,
        bias: bool,
        vb: VarBuilder,
        linears: &LinearSource,
    ) -> Result<Self> {
        let inner = dim * mult;
        Ok(Self {
            proj_in: linears.linear(dim, inner, bias, vb.pp("net.0.proj"))?,
            proj_out: linears.linear(inner, dim_out, bias, vb.pp("net.2"))?,
        })
    }
}

impl Module for FeedForward {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.proj_out
            .forward(&gelu_tanh(&self.proj_in.forward(x)?)?)
    }
}

//! Port of `ltx_core/model/transformer/text_projection.py`: the 19B caption projection.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

use crate::kernels::activations::gelu_tanh;

/// `linear_1` → activation → `linear_2`.
#[derive(Clone, Debug)]
pub struct PixArtAlphaTextProjection {
    linear_1: Linear,
    linear_2: Linear,
    act: TextProjectionAct,
}

/// Activation between the two linears.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextProjectionAct {
    GeluTanh,
    Silu,
}

impl PixArtAlphaTextProjection {
    pub fn new(
        in_features: usize,
        hidden_size: usize,
        out_features: Option<usize>,
        act: TextProjectionAct,
        vb: VarBuilder,
    ) -> Result<Self> {
        let out = out_features.unwrap_or(hidden_size);
        Ok(Self {
            linear_1: candle_nn::linear(in_features, hidden_size, vb.pp("linear_1"))?,
            linear_2: candle_nn::linear(hidden_size, out, vb.pp("linear_2"))?,
            act,
        })
    }
}

impl Module for PixArtAlphaTextProjection {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.linear_1.forward(x)?;
        let h = match self.act {
            TextProjectionAct::GeluTanh => gelu_tanh(&h)?,
            TextProjectionAct::Silu => h.silu()?,
        };
        self.linear_2.forward(&h)
    }
}

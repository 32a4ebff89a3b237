//! Port of `ltx_core/model/audio_vae/causal_conv_2d.py`.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Conv2d, VarBuilder};

use super::model_configurator::CausalityAxis;

/// A conv2d (stride 1) whose zero padding puts the whole kernel reach before each output along the
/// causal axis (`(left, right, top, bottom)` as `F.pad`), keys `conv.{weight,bias}`.
#[derive(Clone, Debug)]
pub struct CausalConv2d {
    conv: Conv2d,
    /// (left, right, top, bottom)
    pad: (usize, usize, usize, usize),
}

impl CausalConv2d {
    pub fn new(
        cin: usize,
        cout: usize,
        kernel: usize,
        axis: CausalityAxis,
        vb: VarBuilder,
    ) -> Result<Self> {
        let p = kernel - 1;
        let pad = match axis {
            CausalityAxis::None => (p / 2, p - p / 2, p / 2, p - p / 2),
            CausalityAxis::Width | CausalityAxis::WidthCompatibility => (p, 0, p / 2, p - p / 2),
            CausalityAxis::Height => (p / 2, p - p / 2, p, 0),
        };
        Ok(Self {
            conv: candle_nn::conv2d(cin, cout, kernel, Default::default(), vb.pp("conv"))?,
            pad,
        })
    }
}

/// `F.pad(x, (left, right, top, bottom))` with zeros on `[B, C, H, W]`.
pub(crate) fn pad2d(x: &Tensor, (l, r, t, b): (usize, usize, usize, usize)) -> Result<Tensor> {
    x.pad_with_zeros(3, l, r)?.pad_with_zeros(2, t, b)
}

impl Module for CausalConv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.conv.forward(&pad2d(x, self.pad)?)
    }
}

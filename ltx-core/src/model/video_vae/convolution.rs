//! Port of `ltx_core/model/video_vae/convolution.py`: `CausalConv3d` and the 1×1×1 linear conv.
//!
//! The 3-D convolution itself is [`crate::kernels::conv3d`]: time folded into the batch, one 2-D
//! convolution whose output channels stack the temporal taps, then a shifted temporal sum.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use crate::kernels::conv3d::{Conv3dSpec, Conv3dWeights, PadMode};

/// `CausalConv3d`: a cubic kernel whose time padding repeats edge frames instead of zeros.
/// Weights live under `conv.weight` / `conv.bias` (the wrapped `nn.Conv3d`).
pub struct CausalConv3d {
    conv: Conv3dWeights,
    time_kernel: usize,
    spec: Conv3dSpec,
}

impl CausalConv3d {
    /// `stride` is `(time, space)`; spatial padding is `kernel / 2` in `pad_mode`.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: (usize, usize),
        pad_mode: PadMode,
        vb: VarBuilder,
    ) -> Result<Self> {
        let vb = vb.pp("conv");
        let weight = vb.get(
            (out_channels, in_channels, kernel, kernel, kernel),
            "weight",
        )?;
        let bias = vb.get(out_channels, "bias")?;
        Ok(Self {
            conv: Conv3dWeights::new(&weight, Some(&bias))?,
            time_kernel: kernel,
            spec: Conv3dSpec {
                time_pad: (0, 0),
                time_stride: stride.0,
                spatial_stride: stride.1,
                spatial_pad: kernel / 2,
                pad_mode,
            },
        })
    }

    /// `x` `[B, C, F, H, W]`. Causal: `kt − 1` copies of the first frame in front; otherwise
    /// `(kt − 1) / 2` copies of the first frame in front and of the last frame behind.
    pub fn forward(&self, x: &Tensor, causal: bool) -> Result<Tensor> {
        let k = self.time_kernel;
        let time_pad = if causal {
            (k - 1, 0)
        } else {
            ((k - 1) / 2, (k - 1) / 2)
        };
        self.conv.forward(
            x,
            Conv3dSpec {
                time_pad,
                ..self.spec
            },
        )
    }
}

/// `make_linear_nd(dims=3)`: a 1×1×1 `nn.Conv3d` with bias (`weight`, `bias` keys, no `.conv`).
pub struct LinearConv3d {
    conv: Conv3dWeights,
}

impl LinearConv3d {
    pub fn new(in_channels: usize, out_channels: usize, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get((out_channels, in_channels, 1, 1, 1), "weight")?;
        let bias = vb.get(out_channels, "bias")?;
        Ok(Self {
            conv: Conv3dWeights::new(&weight, Some(&bias))?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let spec = Conv3dSpec {
            time_pad: (0, 0),
            time_stride: 1,
            spatial_stride: 1,
            spatial_pad: 0,
            pad_mode: PadMode::Zeros,
        };
        self.conv.forward(x, spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv3d::conv2d_call_count;
    use crate::test_utils::max_abs_diff;
    use candle_core::{DType, Device, Tensor};

    fn vb(cin: usize, cout: usize, k: usize) -> VarBuilder<'static> {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 0.1, (cout, cin, k, k, k), &dev).unwrap();
        let b = Tensor::randn(0f32, 0.1, cout, &dev).unwrap();
        let map = std::collections::HashMap::from([
            ("conv.weight".to_string(), w.clone()),
            ("conv.bias".to_string(), b.clone()),
            ("weight".to_string(), w),
            ("bias".to_string(), b),
        ]);
        VarBuilder::from_tensors(map, DType::F32, &dev)
    }

    #[test]
    fn one_conv2d_per_layer_call() {
        let conv = CausalConv3d::new(4, 6, 3, (1, 1), PadMode::Reflect, vb(4, 6, 3)).unwrap();
        let x = Tensor::randn(0f32, 1.0, (1, 4, 5, 8, 8), &Device::Cpu).unwrap();
        for causal in [true, false] {
            let before = conv2d_call_count();
            let y = conv.forward(&x, causal).unwrap();
            assert_eq!(conv2d_call_count() - before, 1, "causal={causal}");
            assert_eq!(y.dims(), &[1, 6, 5, 8, 8]);
        }
        let lin = LinearConv3d::new(4, 6, vb(4, 6, 1)).unwrap();
        let before = conv2d_call_count();
        assert_eq!(lin.forward(&x).unwrap().dims(), &[1, 6, 5, 8, 8]);
        assert_eq!(conv2d_call_count() - before, 1);
    }

    #[test]
    fn causal_padding_sees_only_the_past() {
        // Changing the last frame must not change earlier outputs of a causal conv.
        let conv = CausalConv3d::new(2, 3, 3, (1, 1), PadMode::Zeros, vb(2, 3, 3)).unwrap();
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (1, 2, 4, 6, 6), &dev).unwrap();
        let last = Tensor::randn(0f32, 1.0, (1, 2, 1, 6, 6), &dev).unwrap();
        let x2 = Tensor::cat(&[x.narrow(2, 0, 3).unwrap(), last], 2).unwrap();
        let (a, b) = (
            conv.forward(&x, true).unwrap(),
            conv.forward(&x2, true).unwrap(),
        );
        let d = max_abs_diff(&a.narrow(2, 0, 3).unwrap(), &b.narrow(2, 0, 3).unwrap());
        assert_eq!(d, 0.0);
    }
}

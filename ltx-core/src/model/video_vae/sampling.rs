//! Port of `ltx_core/model/video_vae/sampling.py`: space↔depth resampling blocks.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::convolution::CausalConv3d;
use crate::kernels::conv3d::PadMode;

/// `b c (d p1) (h p2) (w p3) -> b (c p1 p2 p3) d h w`.
fn space_to_depth(x: &Tensor, s: (usize, usize, usize)) -> Result<Tensor> {
    let (b, c, d, h, w) = x.dims5()?;
    let (d, h, w) = (d / s.0, h / s.1, w / s.2);
    x.reshape(vec![b, c, d, s.0, h, s.1, w, s.2])?
        .permute(vec![0, 1, 3, 5, 7, 2, 4, 6])?
        .reshape((b, c * s.0 * s.1 * s.2, d, h, w))
}

/// `b (c p1 p2 p3) d h w -> b c (d p1) (h p2) (w p3)`.
fn depth_to_space(x: &Tensor, s: (usize, usize, usize)) -> Result<Tensor> {
    let (b, cs, d, h, w) = x.dims5()?;
    let c = cs / (s.0 * s.1 * s.2);
    x.reshape(vec![b, c, s.0, s.1, s.2, d, h, w])?
        .permute(vec![0, 1, 5, 2, 6, 3, 7, 4])?
        .reshape((b, c, d * s.0, h * s.1, w * s.2))
}

/// Encoder `compress_*_res`: conv to `out/∏s` channels then space-to-depth, plus a parameter-free
/// residual (space-to-depth of the input, averaged over channel groups).
pub struct SpaceToDepthDownsample {
    stride: (usize, usize, usize),
    group_size: usize,
    conv: CausalConv3d,
}

impl SpaceToDepthDownsample {
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        stride: (usize, usize, usize),
        pad_mode: PadMode,
        vb: VarBuilder,
    ) -> Result<Self> {
        let prod = stride.0 * stride.1 * stride.2;
        if out_channels % prod != 0 || (in_channels * prod) % out_channels != 0 {
            candle_core::bail!(
                "SpaceToDepthDownsample: {in_channels} -> {out_channels} channels do not fit stride {stride:?}"
            )
        }
        Ok(Self {
            stride,
            group_size: in_channels * prod / out_channels,
            conv: CausalConv3d::new(
                in_channels,
                out_channels / prod,
                3,
                (1, 1),
                pad_mode,
                vb.pp("conv"),
            )?,
        })
    }

    pub fn forward(&self, x: &Tensor, causal: bool) -> Result<Tensor> {
        let x = if self.stride.0 == 2 {
            x.pad_with_same(2, 1, 0)?
        } else {
            x.clone()
        };
        let (_, _, d, h, w) = x.dims5()?;
        if d % self.stride.0 != 0 || h % self.stride.1 != 0 || w % self.stride.2 != 0 {
            candle_core::bail!(
                "SpaceToDepthDownsample: extent {d}x{h}x{w} is not divisible by stride {:?}",
                self.stride
            )
        }
        let skip = space_to_depth(&x, self.stride)?;
        let (b, cs, dd, hh, ww) = skip.dims5()?;
        let skip = skip
            .reshape(vec![b, cs / self.group_size, self.group_size, dd, hh, ww])?
            .mean(2)?;
        let y = space_to_depth(&self.conv.forward(&x, causal)?, self.stride)?;
        y + skip
    }
}

/// Decoder `compress_*`: conv to `∏s·C/m` channels then depth-to-space (dropping the first frame
/// after a temporal ×2), plus an optional residual of the tiled depth-to-space input.
pub struct DepthToSpaceUpsample {
    stride: (usize, usize, usize),
    residual: bool,
    reduction: usize,
    conv: CausalConv3d,
}

impl DepthToSpaceUpsample {
    pub fn new(
        in_channels: usize,
        stride: (usize, usize, usize),
        residual: bool,
        reduction: usize,
        pad_mode: PadMode,
        vb: VarBuilder,
    ) -> Result<Self> {
        let prod = stride.0 * stride.1 * stride.2;
        if (prod * in_channels) % reduction != 0 || (residual && in_channels % prod != 0) {
            candle_core::bail!(
                "DepthToSpaceUpsample: {in_channels} channels do not fit stride {stride:?} / reduction {reduction}"
            )
        }
        let out = prod * in_channels / reduction;
        Ok(Self {
            stride,
            residual,
            reduction,
            conv: CausalConv3d::new(in_channels, out, 3, (1, 1), pad_mode, vb.pp("conv"))?,
        })
    }

    pub fn forward(&self, x: &Tensor, causal: bool) -> Result<Tensor> {
        let drop_first = |t: Tensor| -> Result<Tensor> {
            if self.stride.0 == 2 {
                let f = t.dim(2)?;
                t.narrow(2, 1, f - 1)
            } else {
                Ok(t)
            }
        };
        // The conv first, then the (parameter-free) residual: never both large inputs alive.
        let y = drop_first(depth_to_space(&self.conv.forward(x, causal)?, self.stride)?)?;
        if !self.residual {
            return Ok(y);
        }
        let prod = self.stride.0 * self.stride.1 * self.stride.2;
        let skip = depth_to_space(x, self.stride)?.repeat((1, prod / self.reduction, 1, 1, 1))?;
        y + drop_first(skip)?
    }
}

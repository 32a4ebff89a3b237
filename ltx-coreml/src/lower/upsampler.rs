//! MIL lowering of the latent upsampler (`ltx_core::model::upsampler::model`), time-major.

use candle_core::Tensor;
use candle_nn::VarBuilder;
use ltx_core::kernels::conv3d::PadMode;
use ltx_core::model::upsampler::LatentUpsamplerConfig;

use super::common::{Ctx, TimePad};
use crate::error::{CoreMlError, Result};
use crate::mil::Var;

const GROUPS: usize = 32;
const GN_EPS: f64 = 1e-5;

/// Per-channel latent statistics used by `upsample_video` (`std`, `mean`, each `[C]`).
pub struct LatentStats {
    pub std: Tensor,
    pub mean: Tensor,
}

/// `(time, space)` factors of an upsampler; rational resamplers are refused.
pub fn upsampler_factors(cfg: &LatentUpsamplerConfig) -> Result<(usize, usize)> {
    if cfg.rational_resampler {
        return Err(CoreMlError::UnsupportedModel(format!(
            "rational latent upsampler (spatial_scale {}): its blur-downsample stage is not \
             exported; the x2 spatial, x2 temporal and spatio-temporal variants are",
            cfg.spatial_scale
        )));
    }
    let t = if cfg.temporal_upsample { 2 } else { 1 };
    let s = if cfg.spatial_upsample { 2 } else { 1 };
    Ok((t, s))
}

struct Up<'c, 'g> {
    ctx: &'c mut Ctx<'g>,
    dims: usize,
}

impl Up<'_, '_> {
    /// `ConvNd`: a 3×3×3 conv with zero padding 1 on every axis, or a per-frame 3×3 conv.
    fn conv(&mut self, x: &Var, cin: usize, cout: usize, vb: &VarBuilder) -> Result<Var> {
        let b = self.ctx.get(vb, &[cout], "bias")?;
        if self.dims == 2 {
            let w = self
                .ctx
                .get(vb, &[cout, cin, 3, 3], "weight")?
                .unsqueeze(2)?;
            return self.per_frame(x, &w, &b);
        }
        let w = self.ctx.get(vb, &[cout, cin, 3, 3, 3], "weight")?;
        self.ctx
            .conv3d(x, &w, &b, TimePad::Zeros(1, 1), 1, 1, 1, PadMode::Zeros)
    }

    fn per_frame(&mut self, x: &Var, w: &Tensor, b: &Tensor) -> Result<Var> {
        self.ctx
            .conv3d(x, w, b, TimePad::Zeros(0, 0), 1, 1, 1, PadMode::Zeros)
    }

    fn norm(&mut self, x: &Var, ch: usize, vb: &VarBuilder) -> Result<Var> {
        let w = self.ctx.get(vb, &[ch], "weight")?;
        let b = self.ctx.get(vb, &[ch], "bias")?;
        // dims 2 runs the frames as a batch: statistics per frame.
        self.ctx
            .group_norm(x, GROUPS, GN_EPS, &w, &b, self.dims == 2)
    }

    fn res_block(&mut self, x: &Var, ch: usize, vb: &VarBuilder) -> Result<Var> {
        let h = self.conv(x, ch, ch, &vb.pp("conv1"))?;
        let h = self.norm(&h, ch, &vb.pp("norm1"))?;
        let h = self.ctx.g.silu(&h);
        let h = self.conv(&h, ch, ch, &vb.pp("conv2"))?;
        let h = self.norm(&h, ch, &vb.pp("norm2"))?;
        let h = self.ctx.g.add(&h, x)?;
        Ok(self.ctx.g.silu(&h))
    }
}

/// Lowers the upsampler: `[F, C, H, W]` → upsampled `[F2, C, H2, W2]`. With `stats` the graph
/// is `upsample_video` (un-normalise, upsample, normalise).
pub fn lower_upsampler(
    ctx: &mut Ctx<'_>,
    cfg: &LatentUpsamplerConfig,
    vb: &VarBuilder,
    stats: Option<&LatentStats>,
    latent: &Var,
) -> Result<Var> {
    cfg.validate()?;
    upsampler_factors(cfg)?;
    if cfg.mid_channels % GROUPS != 0 {
        return Err(CoreMlError::UnsupportedModel(format!(
            "mid_channels {} is not divisible into {GROUPS} groups",
            cfg.mid_channels
        )));
    }
    let (cin, mid) = (cfg.in_channels, cfg.mid_channels);
    let mut u = Up {
        ctx,
        dims: cfg.dims,
    };
    let mut x = latent.clone();
    let stat_consts = match stats {
        Some(s) => {
            let sv = u.ctx.channel_const(&s.std)?;
            let mv = u.ctx.channel_const(&s.mean)?;
            x = u.ctx.g.mul(&x, &sv)?;
            x = u.ctx.g.add(&x, &mv)?;
            Some((sv, mv))
        }
        None => None,
    };
    x = u.conv(&x, cin, mid, &vb.pp("initial_conv"))?;
    x = u.norm(&x, mid, &vb.pp("initial_norm"))?;
    x = u.ctx.g.silu(&x);
    for i in 0..cfg.num_blocks_per_stage {
        x = u.res_block(&x, mid, &vb.pp("res_blocks").pp(i))?;
    }
    let up = vb.pp("upsampler").pp("0");
    x = match (cfg.spatial_upsample, cfg.temporal_upsample) {
        (true, false) => {
            let w = u
                .ctx
                .get(&up, &[4 * mid, mid, 3, 3], "weight")?
                .unsqueeze(2)?;
            let b = u.ctx.get(&up, &[4 * mid], "bias")?;
            let y = u.per_frame(&x, &w, &b)?;
            u.ctx.d2s_spatial(&y, 2, 2)?
        }
        (false, true) => {
            let y = u.conv(&x, mid, 2 * mid, &up)?;
            let y = u.ctx.d2s_time(&y, 2)?;
            u.ctx.drop_first_frame(&y)?
        }
        (true, true) => {
            let y = u.conv(&x, mid, 8 * mid, &up)?;
            let y = u.ctx.depth_to_space(&y, (2, 2, 2))?;
            u.ctx.drop_first_frame(&y)?
        }
        (false, false) => {
            return Err(CoreMlError::UnsupportedModel(
                "upsampler with neither spatial nor temporal upsampling".into(),
            ))
        }
    };
    for i in 0..cfg.num_blocks_per_stage {
        x = u.res_block(&x, mid, &vb.pp("post_upsample_res_blocks").pp(i))?;
    }
    x = u.conv(&x, mid, cin, &vb.pp("final_conv"))?;
    if let Some((sv, mv)) = stat_consts {
        x = u.ctx.g.sub(&x, &mv)?;
        x = u.ctx.g.real_div(&x, &sv)?;
    }
    Ok(x)
}

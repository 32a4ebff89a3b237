//! MIL lowering of the video VAE encoder and decoder, mirroring
//! `ltx_core::model::video_vae::{encoder, decoder}` layer by layer in time-major rank-4 form.

use candle_core::Tensor;
use candle_nn::VarBuilder;
use ltx_core::kernels::conv3d::PadMode;
use ltx_core::model::common::normalization::PixelNorm;
use ltx_core::model::video_vae::decoder::bottleneck_channels;
use ltx_core::model::video_vae::model_configurator::{
    DecoderBlock, EncoderBlock, LogVarianceType, NormLayerType,
};
use ltx_core::model::video_vae::VideoVaeConfig;

use super::common::{Ctx, TimePad};
use crate::error::{CoreMlError, Result};
use crate::mil::Var;

/// `ResnetBlock3D`'s eps for GroupNorm shortcuts.
const RESNET_EPS: f64 = 1e-6;
const KERNEL: usize = 3;

/// Refuses what the exporter does not lower (typed errors instead of silently wrong graphs).
fn check_vae_config(cfg: &VideoVaeConfig, decoder: bool) -> Result<()> {
    cfg.validate()?;
    if cfg.norm_layer != NormLayerType::PixelNorm {
        return Err(CoreMlError::UnsupportedModel(
            "norm_layer group_norm (only pixel_norm VAEs are exported)".into(),
        ));
    }
    if decoder {
        if cfg.timestep_conditioning {
            return Err(CoreMlError::UnsupportedModel(
                "a timestep-conditioned decoder (noise and timestep are call inputs; the released \
                 LTX-2 decoders have timestep_conditioning false)"
                    .into(),
            ));
        }
        for b in cfg.decoder_blocks()? {
            if let DecoderBlock::ResX {
                inject_noise: true, ..
            }
            | DecoderBlock::ResXY {
                inject_noise: true, ..
            } = b
            {
                return Err(CoreMlError::UnsupportedModel(
                    "decoder blocks with inject_noise (random noise inside the graph)".into(),
                ));
            }
        }
    }
    Ok(())
}

/// Compression factors `(time, space)` of the decoder (the encoder mirrors them).
pub fn decoder_factors(cfg: &VideoVaeConfig) -> Result<(usize, usize)> {
    time_and_space(cfg.decoder_scale_factors()?)
}

/// Compression factors `(time, space)` of the encoder.
pub fn encoder_factors(cfg: &VideoVaeConfig) -> Result<(usize, usize)> {
    time_and_space(cfg.encoder_scale_factors()?)
}

/// The exported graphs take one spatial factor for both axes.
fn time_and_space(f: ltx_core::types::SpatioTemporalScaleFactors) -> Result<(usize, usize)> {
    if f.width != f.height {
        return Err(CoreMlError::UnsupportedModel(format!(
            "a VAE compressing width and height differently ({} x {})",
            f.width, f.height
        )));
    }
    Ok((f.time, f.width))
}

/// Maps patch channel `c·p² + q·p + r` (height offset first, what the rank-4 depth-to-space
/// helpers use) to LTX's `c·p² + r·p + q` (width offset first).
fn patch_channel_order(channels: usize, p: usize) -> Result<Tensor> {
    let idx: Vec<u32> = (0..channels * p * p)
        .map(|n| {
            let (c, rem) = (n / (p * p), n % (p * p));
            let (q, r) = (rem / p, rem % p);
            (c * p * p + r * p + q) as u32
        })
        .collect();
    Ok(Tensor::new(idx, &candle_core::Device::Cpu)?)
}

struct Vae<'c, 'g> {
    ctx: &'c mut Ctx<'g>,
    pad: PadMode,
    causal: bool,
    eps: f64,
}

impl Vae<'_, '_> {
    /// `CausalConv3d` with kernel 3 under `vb` (`conv.weight`, `conv.bias`).
    fn causal_conv(
        &mut self,
        x: &Var,
        cin: usize,
        cout: usize,
        stride: (usize, usize),
        vb: &VarBuilder,
    ) -> Result<Var> {
        let vb = vb.pp("conv");
        let w = self
            .ctx
            .get(&vb, &[cout, cin, KERNEL, KERNEL, KERNEL], "weight")?;
        let b = self.ctx.get(&vb, &[cout], "bias")?;
        self.conv_with(x, &w, &b, stride)
    }

    fn conv_with(
        &mut self,
        x: &Var,
        w: &Tensor,
        b: &Tensor,
        stride: (usize, usize),
    ) -> Result<Var> {
        let k = KERNEL;
        let tp = if self.causal {
            TimePad::Replicate(k - 1, 0)
        } else {
            TimePad::Replicate((k - 1) / 2, (k - 1) / 2)
        };
        self.ctx
            .conv3d(x, w, b, tp, stride.0, stride.1, k / 2, self.pad)
    }

    /// `ResnetBlock3D` without timestep conditioning or noise.
    fn resnet(&mut self, x: &Var, cin: usize, cout: usize, vb: &VarBuilder) -> Result<Var> {
        let h = self.ctx.pixel_norm_silu(x, self.eps)?;
        let h = self.causal_conv(&h, cin, cout, (1, 1), &vb.pp("conv1"))?;
        let h = self.ctx.pixel_norm_silu(&h, self.eps)?;
        let h = self.causal_conv(&h, cout, cout, (1, 1), &vb.pp("conv2"))?;
        let skip = if cin != cout {
            let n3 = vb.pp("norm3");
            let gw = self.ctx.get(&n3, &[cin], "weight")?;
            let gb = self.ctx.get(&n3, &[cin], "bias")?;
            let s = self.ctx.group_norm(x, 1, RESNET_EPS, &gw, &gb, false)?;
            let sc = vb.pp("conv_shortcut");
            let w = self.ctx.get(&sc, &[cout, cin, 1, 1, 1], "weight")?;
            let b = self.ctx.get(&sc, &[cout], "bias")?;
            self.ctx
                .conv3d(&s, &w, &b, TimePad::Zeros(0, 0), 1, 1, 0, PadMode::Zeros)?
        } else {
            x.clone()
        };
        self.ctx.g.add(&skip, &h)
    }

    fn mid(&mut self, x: &Var, ch: usize, layers: usize, vb: &VarBuilder) -> Result<Var> {
        let mut h = x.clone();
        for i in 0..layers {
            h = self.resnet(&h, ch, ch, &vb.pp("res_blocks").pp(i))?;
        }
        Ok(h)
    }
}

/// Lowers the decoder: input `[F', C, H', W']` (normalised latent) → `[F, 3, H, W]`.
pub fn lower_decoder(
    ctx: &mut Ctx<'_>,
    cfg: &VideoVaeConfig,
    vb: &VarBuilder,
    latent: &Var,
) -> Result<Var> {
    check_vae_config(cfg, true)?;
    let lc = cfg.latent_channels;
    let stats = vb.pp("per_channel_statistics");
    let std = ctx.get(&stats, &[lc], "std-of-means")?;
    let mean = ctx.get(&stats, &[lc], "mean-of-means")?;
    let mut v = Vae {
        ctx,
        pad: cfg.decoder_padding()?,
        causal: cfg.causal_decoder,
        eps: PixelNorm::DEFAULT_EPS,
    };
    let sv = v.ctx.channel_const(&std)?;
    let mv = v.ctx.channel_const(&mean)?;
    let x = v.ctx.g.mul(latent, &sv)?;
    let mut x = v.ctx.g.add(&x, &mv)?;
    let blocks = cfg.decoder_blocks()?;
    // the width after conv_in, as the Candle decoder computes it (reference 1.2.0)
    let mut ch = bottleneck_channels(cfg.decoder_base_channels, &blocks);
    x = v.causal_conv(&x, lc, ch, (1, 1), &vb.pp("conv_in"))?;
    for (i, block) in blocks.into_iter().rev().enumerate() {
        let bvb = vb.pp("up_blocks").pp(i);
        let (stride, residual, m) = match block {
            DecoderBlock::ResX { num_layers, .. } => {
                x = v.mid(&x, ch, num_layers, &bvb)?;
                continue;
            }
            DecoderBlock::ResXY { multiplier, .. } => {
                let out = ch / multiplier;
                x = v.resnet(&x, ch, out, &bvb)?;
                ch = out;
                continue;
            }
            DecoderBlock::CompressTime { multiplier } => ((2, 1, 1), false, multiplier),
            DecoderBlock::CompressSpace { multiplier } => ((1, 2, 2), false, multiplier),
            DecoderBlock::CompressAll {
                residual,
                multiplier,
            } => ((2, 2, 2), residual, multiplier),
        };
        // DepthToSpaceUpsample
        let prod = stride.0 * stride.1 * stride.2;
        let out = prod * ch / m;
        let y = v.causal_conv(&x, ch, out, (1, 1), &bvb.pp("conv"))?;
        let mut y = v.ctx.depth_to_space(&y, stride)?;
        if stride.0 == 2 {
            y = v.ctx.drop_first_frame(&y)?;
        }
        if residual {
            let s = v.ctx.depth_to_space(&x, stride)?;
            let s = v.ctx.g.concat(&vec![s; prod / m], 1)?;
            let s = if stride.0 == 2 {
                v.ctx.drop_first_frame(&s)?
            } else {
                s
            };
            y = v.ctx.g.add(&y, &s)?;
        }
        x = y;
        ch = out / prod;
    }
    x = v.ctx.pixel_norm_silu(&x, v.eps)?;
    // conv_out, with its output channels reordered so the plain depth-to-space below yields
    // LTX's `unpatchify` layout.
    let p = cfg.patch_size;
    let out_ch = cfg.out_channels * p * p;
    let co = vb.pp("conv_out").pp("conv");
    let w = v
        .ctx
        .get(&co, &[out_ch, ch, KERNEL, KERNEL, KERNEL], "weight")?;
    let b = v.ctx.get(&co, &[out_ch], "bias")?;
    let order = patch_channel_order(cfg.out_channels, p)?;
    let (w, b) = (w.index_select(&order, 0)?, b.index_select(&order, 0)?);
    x = v.conv_with(&x, &w, &b, (1, 1))?;
    v.ctx.d2s_spatial(&x, p, p)
}

/// Lowers the encoder: input `[F, 3, H, W]` in [-1, 1] → normalised latent `[F', C, H', W']`.
pub fn lower_encoder(
    ctx: &mut Ctx<'_>,
    cfg: &VideoVaeConfig,
    vb: &VarBuilder,
    video: &Var,
) -> Result<Var> {
    check_vae_config(cfg, false)?;
    let p = cfg.patch_size;
    let lc = cfg.latent_channels;
    let mut v = Vae {
        ctx,
        pad: cfg.encoder_padding()?,
        causal: true,
        eps: PixelNorm::DEFAULT_EPS,
    };
    // patchify = plain space-to-depth + conv_in with its input channels reordered.
    let mut x = v.ctx.s2d_spatial(video, p, p)?;
    let in_ch = cfg.in_channels * p * p;
    let ci = vb.pp("conv_in").pp("conv");
    let w = v
        .ctx
        .get(&ci, &[lc, in_ch, KERNEL, KERNEL, KERNEL], "weight")?;
    let b = v.ctx.get(&ci, &[lc], "bias")?;
    let w = w.index_select(&patch_channel_order(cfg.in_channels, p)?, 1)?;
    x = v.conv_with(&x, &w, &b, (1, 1))?;
    let mut ch = lc;
    for (i, block) in cfg.encoder_blocks()?.into_iter().enumerate() {
        let bvb = vb.pp("down_blocks").pp(i);
        let (conv_out, stride) = match block {
            EncoderBlock::ResX { num_layers } => {
                x = v.mid(&x, ch, num_layers, &bvb)?;
                continue;
            }
            EncoderBlock::ResXY { multiplier } => {
                x = v.resnet(&x, ch, ch * multiplier, &bvb)?;
                ch *= multiplier;
                continue;
            }
            EncoderBlock::CompressTime => (ch, (2, 1)),
            EncoderBlock::CompressSpace => (ch, (1, 2)),
            EncoderBlock::CompressAll => (ch, (2, 2)),
            EncoderBlock::CompressAllXY { multiplier } => (ch * multiplier, (2, 2)),
            EncoderBlock::CompressAllRes { multiplier } => {
                x = space_to_depth_down(&mut v, &x, ch, ch * multiplier, (2, 2, 2), &bvb)?;
                ch *= multiplier;
                continue;
            }
            EncoderBlock::CompressSpaceRes { multiplier } => {
                x = space_to_depth_down(&mut v, &x, ch, ch * multiplier, (1, 2, 2), &bvb)?;
                ch *= multiplier;
                continue;
            }
            EncoderBlock::CompressTimeRes { multiplier } => {
                x = space_to_depth_down(&mut v, &x, ch, ch * multiplier, (2, 1, 1), &bvb)?;
                ch *= multiplier;
                continue;
            }
        };
        x = v.causal_conv(&x, ch, conv_out, stride, &bvb)?;
        ch = conv_out;
    }
    x = v.ctx.pixel_norm_silu(&x, v.eps)?;
    // conv_out keeps only the mean channels: the log-variance is never used by `forward`.
    let full = match cfg.latent_log_var {
        LogVarianceType::PerChannel => 2 * lc,
        LogVarianceType::Uniform | LogVarianceType::Constant => lc + 1,
        LogVarianceType::None => lc,
    };
    let co = vb.pp("conv_out").pp("conv");
    let w = v
        .ctx
        .get(&co, &[full, ch, KERNEL, KERNEL, KERNEL], "weight")?;
    let b = v.ctx.get(&co, &[full], "bias")?;
    x = v.conv_with(&x, &w.narrow(0, 0, lc)?, &b.narrow(0, 0, lc)?, (1, 1))?;
    let stats = vb.pp("per_channel_statistics");
    let std = v.ctx.get(&stats, &[lc], "std-of-means")?;
    let mean = v.ctx.get(&stats, &[lc], "mean-of-means")?;
    let mv = v.ctx.channel_const(&mean)?;
    let sv = v.ctx.channel_const(&std)?;
    let x = v.ctx.g.sub(&x, &mv)?;
    v.ctx.g.real_div(&x, &sv)
}

/// `SpaceToDepthDownsample`: conv then space-to-depth, plus the group-averaged space-to-depth
/// of the input.
fn space_to_depth_down(
    v: &mut Vae<'_, '_>,
    x: &Var,
    cin: usize,
    cout: usize,
    stride: (usize, usize, usize),
    vb: &VarBuilder,
) -> Result<Var> {
    let prod = stride.0 * stride.1 * stride.2;
    if cout % prod != 0 || (cin * prod) % cout != 0 {
        return Err(CoreMlError::UnsupportedModel(format!(
            "SpaceToDepthDownsample {cin} -> {cout} with stride {stride:?}"
        )));
    }
    let group = cin * prod / cout;
    let x = if stride.0 == 2 {
        v.ctx.pad_time(x, TimePad::Replicate(1, 0))?
    } else {
        x.clone()
    };
    let (f, _, h, w) = super::common::dims4(&x)?;
    if f % stride.0 != 0 || h % stride.1 != 0 || w % stride.2 != 0 {
        return Err(CoreMlError::InvalidShape(format!(
            "extent {f}x{h}x{w} is not divisible by the stride {stride:?}"
        )));
    }
    let skip = v.ctx.space_to_depth(&x, stride)?;
    let (ff, cs, hh, ww) = super::common::dims4(&skip)?;
    let skip = v.ctx.g.reshape(&skip, &[ff, cs / group, group, hh * ww])?;
    let skip = v.ctx.g.reduce("reduce_mean", &skip, &[2])?;
    let skip = v.ctx.g.reshape(&skip, &[ff, cs / group, hh, ww])?;
    let y = v.causal_conv(&x, cin, cout / prod, (1, 1), &vb.pp("conv"))?;
    let y = v.ctx.space_to_depth(&y, stride)?;
    v.ctx.g.add(&y, &skip)
}

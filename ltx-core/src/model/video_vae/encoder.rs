//! Port of `VideoEncoder` (`ltx_core/model/video_vae/video_vae.py`): pixels → normalised latent.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::convolution::CausalConv3d;
use super::model_configurator::{EncoderBlock, LogVarianceType, VideoVaeConfig};
use super::ops::{patchify, PerChannelStatistics};
use super::resnet::{build_norm, norm_silu, ResnetBlock3D, UNetMidBlock3D};
use super::sampling::SpaceToDepthDownsample;
use crate::model::common::normalization::Norm;
use crate::{Error, Result as LtxResult};

/// Temporal compression of the released layouts: a video of `1 + 8k` frames → `1 + k` latents.
pub const TIME_SCALE: usize = 8;
/// Spatial compression of the released layouts (patchify 4 × three 2× stages).
pub const SPACE_SCALE: usize = 32;

enum DownBlock {
    Mid(UNetMidBlock3D),
    Res(Box<ResnetBlock3D>),
    Conv(CausalConv3d),
    SpaceToDepth(SpaceToDepthDownsample),
}

impl DownBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // The encoder always runs causally.
        match self {
            Self::Mid(b) => b.forward(x, true, None, None),
            Self::Res(b) => b.forward(x, true, None, None),
            Self::Conv(c) => c.forward(x, true),
            Self::SpaceToDepth(b) => b.forward(x, true),
        }
    }
}

/// The video VAE encoder: `[B, 3, F, H, W]` in [-1, 1] → `[B, 128, 1 + (F−1)/8, H/32, W/32]`.
pub struct VideoEncoder {
    patch_size: usize,
    latent_channels: usize,
    space_factor: usize,
    conv_in: CausalConv3d,
    down_blocks: Vec<DownBlock>,
    conv_norm_out: Norm,
    conv_out: CausalConv3d,
    per_channel_statistics: PerChannelStatistics,
}

impl VideoEncoder {
    /// Builds the encoder from the `vae` config; `vb` sees the keys after
    /// [`super::vae_encoder_keys_filter`].
    pub fn new(cfg: &VideoVaeConfig, vb: VarBuilder) -> LtxResult<Self> {
        cfg.validate()?;
        let pad = cfg.encoder_padding()?;
        let norm = cfg.norm_layer;
        let latent = cfg.latent_channels;
        let in_ch = cfg.in_channels * cfg.patch_size * cfg.patch_size;
        let conv_in = CausalConv3d::new(in_ch, latent, 3, (1, 1), pad, vb.pp("conv_in"))?;
        let mut ch = latent;
        let mut down_blocks = Vec::new();
        for (i, block) in cfg.encoder_blocks()?.into_iter().enumerate() {
            let vb = vb.pp("down_blocks").pp(i);
            let conv = |cout, stride| CausalConv3d::new(ch, cout, 3, stride, pad, vb.clone());
            let s2d = |mult: usize, stride| {
                SpaceToDepthDownsample::new(ch, ch * mult, stride, pad, vb.clone())
            };
            let (b, out) = match block {
                EncoderBlock::ResX { num_layers } => (
                    DownBlock::Mid(UNetMidBlock3D::new(
                        ch,
                        num_layers,
                        norm,
                        false,
                        false,
                        pad,
                        vb.clone(),
                    )?),
                    ch,
                ),
                EncoderBlock::ResXY { multiplier } => (
                    DownBlock::Res(Box::new(ResnetBlock3D::new(
                        ch,
                        ch * multiplier,
                        norm,
                        false,
                        false,
                        pad,
                        vb.clone(),
                    )?)),
                    ch * multiplier,
                ),
                EncoderBlock::CompressTime => (DownBlock::Conv(conv(ch, (2, 1))?), ch),
                EncoderBlock::CompressSpace => (DownBlock::Conv(conv(ch, (1, 2))?), ch),
                EncoderBlock::CompressAll => (DownBlock::Conv(conv(ch, (2, 2))?), ch),
                EncoderBlock::CompressAllXY { multiplier } => (
                    DownBlock::Conv(conv(ch * multiplier, (2, 2))?),
                    ch * multiplier,
                ),
                EncoderBlock::CompressAllRes { multiplier } => (
                    DownBlock::SpaceToDepth(s2d(multiplier, (2, 2, 2))?),
                    ch * multiplier,
                ),
                EncoderBlock::CompressSpaceRes { multiplier } => (
                    DownBlock::SpaceToDepth(s2d(multiplier, (1, 2, 2))?),
                    ch * multiplier,
                ),
                EncoderBlock::CompressTimeRes { multiplier } => (
                    DownBlock::SpaceToDepth(s2d(multiplier, (2, 1, 1))?),
                    ch * multiplier,
                ),
            };
            down_blocks.push(b);
            ch = out;
        }
        let space_factor = cfg.patch_size
            * cfg
                .encoder_blocks()?
                .iter()
                .map(|b| match b {
                    EncoderBlock::CompressSpace
                    | EncoderBlock::CompressAll
                    | EncoderBlock::CompressAllXY { .. }
                    | EncoderBlock::CompressAllRes { .. }
                    | EncoderBlock::CompressSpaceRes { .. } => 2,
                    _ => 1,
                })
                .product::<usize>();
        let out_ch = match cfg.latent_log_var {
            LogVarianceType::PerChannel => 2 * latent,
            LogVarianceType::Uniform | LogVarianceType::Constant => latent + 1,
            LogVarianceType::None => latent,
        };
        Ok(Self {
            patch_size: cfg.patch_size,
            latent_channels: latent,
            space_factor,
            conv_in,
            down_blocks,
            conv_norm_out: build_norm(norm, ch, vb.pp("conv_norm_out"))?,
            conv_out: CausalConv3d::new(ch, out_ch, 3, (1, 1), pad, vb.pp("conv_out"))?,
            per_channel_statistics: PerChannelStatistics::new(
                latent,
                vb.pp("per_channel_statistics"),
            )?,
        })
    }

    /// The latent statistics the encoder normalises with (the upsamplers use them too).
    pub fn per_channel_statistics(&self) -> &PerChannelStatistics {
        &self.per_channel_statistics
    }

    pub fn latent_channels(&self) -> usize {
        self.latent_channels
    }

    /// Pixels per latent along H and W (32 for the released layouts).
    pub fn space_factor(&self) -> usize {
        self.space_factor
    }

    /// Encodes `video` `[B, 3, F, H, W]`. Like the reference, a frame count that is not `1 + 8k`
    /// is cropped (the trailing frames are dropped, with a warning); H and W must be multiples
    /// of the spatial compression (32 for the released layouts).
    pub fn forward(&self, video: &Tensor) -> LtxResult<Tensor> {
        let video = crop_to_valid_frames(video, self.space_factor)?;
        let mut x = patchify(&video, self.patch_size)?;
        drop(video);
        x = self.conv_in.forward(&x, true)?;
        for block in &self.down_blocks {
            x = block.forward(&x)?;
        }
        x = norm_silu(&self.conv_norm_out, &x, None)?;
        x = self.conv_out.forward(&x, true)?;
        // Every supported log-variance layout (`none` is rejected by the config) keeps the means
        // in the first `latent` channels; the log-variance is not needed for the mean latent.
        let means = x.narrow(1, 0, self.latent_channels)?;
        Ok(self.per_channel_statistics.normalize(&means)?)
    }
}

/// Checks `[B, 3, F, H, W]` and drops the last `(F − 1) mod 8` frames, as the reference does.
pub(crate) fn crop_to_valid_frames(video: &Tensor, space_factor: usize) -> LtxResult<Tensor> {
    let dims = video.dims();
    if dims.len() != 5 {
        return Err(Error::InvalidInput(format!(
            "video must be [B, C, F, H, W], got shape {dims:?}"
        )));
    }
    let (f, h, w) = (dims[2], dims[3], dims[4]);
    if f == 0 {
        return Err(Error::InvalidInput("video has no frames".into()));
    }
    if h % space_factor != 0 || w % space_factor != 0 || h == 0 || w == 0 {
        return Err(Error::InvalidInput(format!(
            "video size {h}x{w} is not a positive multiple of {space_factor}"
        )));
    }
    let extra = (f - 1) % TIME_SCALE;
    if extra == 0 {
        return Ok(video.clone());
    }
    tracing::warn!(
        frames = f,
        cropped = extra,
        "frame count is not 1 + 8k; cropping the last frames"
    );
    Ok(video.narrow(2, 0, f - extra)?)
}

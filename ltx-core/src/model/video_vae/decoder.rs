//! Port of `VideoDecoder` (`ltx_core/model/video_vae/video_vae.py`): normalised latent → pixels.

use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;

use super::convolution::CausalConv3d;
use super::model_configurator::{DecoderBlock, VideoVaeConfig};
use super::ops::{unpatchify, PerChannelStatistics};
use super::resnet::{build_norm, norm_silu, ResnetBlock3D, SpatialNoise, UNetMidBlock3D};
use super::sampling::DepthToSpaceUpsample;
use crate::model::common::normalization::Norm;
use crate::model::transformer::timestep_embedding::PixArtAlphaCombinedTimestepSizeEmbeddings;
use crate::types::SpatioTemporalScaleFactors;
use crate::{Error, Result as LtxResult};

/// Share of noise mixed into the latent by a timestep-conditioned decoder.
pub const DECODE_NOISE_SCALE: f64 = 0.025;
/// Timestep a timestep-conditioned decoder uses when none is given.
pub const DECODE_TIMESTEP: f64 = 0.05;
/// Rows of the final AdaLN table: shift, scale.
const LAST_ADA_ROWS: usize = 2;

enum UpBlock {
    Mid(UNetMidBlock3D),
    Res(Box<ResnetBlock3D>),
    DepthToSpace(Box<DepthToSpaceUpsample>),
}

/// Timestep-conditioning weights (present when the config has `timestep_conditioning`).
struct TimestepConditioning {
    scale_multiplier: Tensor,
    last_time_embedder: PixArtAlphaCombinedTimestepSizeEmbeddings,
    last_scale_shift_table: Tensor,
}

/// Per-call inputs of [`VideoDecoder::forward`] beyond the latent.
#[derive(Default)]
pub struct DecodeInputs<'a> {
    /// `[B]` decode timestep; defaults to [`DECODE_TIMESTEP`] (timestep-conditioned decoders only).
    pub timestep: Option<&'a Tensor>,
    /// Standard-normal noise shaped like the latent (timestep-conditioned decoders only). When
    /// `None` it is drawn here; the reference draws it from its torch generator.
    pub noise: Option<&'a Tensor>,
    /// Spatial noise for `inject_noise` blocks (unused by the released configs).
    pub spatial_noise: Option<&'a mut SpatialNoise>,
}

/// The video VAE decoder: `[B, C, F', H', W']` → `[B, 3, 1 + t(F'−1), sH', sW']` in about
/// [-1, 1], with the expansion `(t, s)` of the blocks (`(8, 32)` for the released layouts).
pub struct VideoDecoder {
    patch_size: usize,
    scale_factors: SpatioTemporalScaleFactors,
    causal: bool,
    latent_channels: usize,
    per_channel_statistics: PerChannelStatistics,
    conv_in: CausalConv3d,
    up_blocks: Vec<UpBlock>,
    conv_norm_out: Norm,
    conv_out: CausalConv3d,
    timestep_conditioning: Option<TimestepConditioning>,
}

/// Width after `conv_in` (1.2.0 `_decoder_bottleneck_channels`): `base_channels` times the channel
/// divisor of every upsampling block, so that the last block ends at `base_channels` (8× for the
/// released decoders; 1.0.0 used 8× whatever the blocks).
pub fn bottleneck_channels(base_channels: usize, blocks: &[DecoderBlock]) -> usize {
    blocks.iter().fold(base_channels, |ch, block| match *block {
        DecoderBlock::ResX { .. } => ch,
        DecoderBlock::ResXY { multiplier, .. }
        | DecoderBlock::CompressTime { multiplier }
        | DecoderBlock::CompressSpace { multiplier }
        | DecoderBlock::CompressAll { multiplier, .. } => ch * multiplier,
    })
}

impl VideoDecoder {
    /// Builds the decoder from the `vae` config; `vb` sees the keys after
    /// [`super::vae_decoder_keys_filter`].
    pub fn new(cfg: &VideoVaeConfig, vb: VarBuilder) -> LtxResult<Self> {
        cfg.validate()?;
        let pad = cfg.decoder_padding()?;
        let norm = cfg.norm_layer;
        let tc = cfg.timestep_conditioning;
        let blocks = cfg.decoder_blocks()?;
        let mut ch = bottleneck_channels(cfg.decoder_base_channels, &blocks);
        let conv_in = CausalConv3d::new(cfg.latent_channels, ch, 3, (1, 1), pad, vb.pp("conv_in"))?;
        let mut up_blocks = Vec::new();
        for (i, block) in blocks.into_iter().rev().enumerate() {
            let vb = vb.pp("up_blocks").pp(i);
            let d2s = |stride, residual, m: usize| {
                DepthToSpaceUpsample::new(ch, stride, residual, m, pad, vb.clone())
            };
            let (b, out) = match block {
                DecoderBlock::ResX {
                    num_layers,
                    inject_noise,
                } => (
                    UpBlock::Mid(UNetMidBlock3D::new(
                        ch,
                        num_layers,
                        norm,
                        inject_noise,
                        tc,
                        pad,
                        vb.clone(),
                    )?),
                    ch,
                ),
                DecoderBlock::ResXY {
                    multiplier,
                    inject_noise,
                } => (
                    UpBlock::Res(Box::new(ResnetBlock3D::new(
                        ch,
                        ch / multiplier,
                        norm,
                        inject_noise,
                        false,
                        pad,
                        vb.clone(),
                    )?)),
                    ch / multiplier,
                ),
                DecoderBlock::CompressTime { multiplier } => (
                    UpBlock::DepthToSpace(Box::new(d2s((2, 1, 1), false, multiplier)?)),
                    ch / multiplier,
                ),
                DecoderBlock::CompressSpace { multiplier } => (
                    UpBlock::DepthToSpace(Box::new(d2s((1, 2, 2), false, multiplier)?)),
                    ch / multiplier,
                ),
                DecoderBlock::CompressAll {
                    residual,
                    multiplier,
                } => (
                    UpBlock::DepthToSpace(Box::new(d2s((2, 2, 2), residual, multiplier)?)),
                    ch / multiplier,
                ),
            };
            if out == 0 {
                return Err(Error::InvalidConfig(format!(
                    "vae.decoder_blocks: block {i} reduces the width to zero"
                )));
            }
            up_blocks.push(b);
            ch = out;
        }
        let out_ch = cfg.out_channels * cfg.patch_size * cfg.patch_size;
        let timestep_conditioning = if tc {
            Some(TimestepConditioning {
                scale_multiplier: vb.get((), "timestep_scale_multiplier")?,
                last_time_embedder: PixArtAlphaCombinedTimestepSizeEmbeddings::new(
                    ch * LAST_ADA_ROWS,
                    vb.pp("last_time_embedder"),
                )?,
                last_scale_shift_table: vb.get((LAST_ADA_ROWS, ch), "last_scale_shift_table")?,
            })
        } else {
            None
        };
        Ok(Self {
            patch_size: cfg.patch_size,
            scale_factors: cfg.decoder_scale_factors()?,
            causal: cfg.causal_decoder,
            latent_channels: cfg.latent_channels,
            per_channel_statistics: PerChannelStatistics::new(
                cfg.latent_channels,
                vb.pp("per_channel_statistics"),
            )?,
            conv_in,
            up_blocks,
            conv_norm_out: build_norm(norm, ch, vb.pp("conv_norm_out"))?,
            conv_out: CausalConv3d::new(ch, out_ch, 3, (1, 1), pad, vb.pp("conv_out"))?,
            timestep_conditioning,
        })
    }

    pub fn latent_channels(&self) -> usize {
        self.latent_channels
    }

    /// Frames, rows and columns per latent (8 × 32 × 32 for the released layouts).
    pub fn scale_factors(&self) -> SpatioTemporalScaleFactors {
        self.scale_factors
    }

    pub fn has_timestep_conditioning(&self) -> bool {
        self.timestep_conditioning.is_some()
    }

    /// Checks a latent `[B, C, F', H', W']` against this decoder.
    pub fn check_latent(&self, latent: &Tensor) -> LtxResult<()> {
        let dims = latent.dims();
        if dims.len() != 5 || dims[1] != self.latent_channels || dims[2..].contains(&0) {
            return Err(Error::InvalidInput(format!(
                "latent must be [B, {}, F, H, W] with non-zero extents, got shape {dims:?}",
                self.latent_channels
            )));
        }
        Ok(())
    }

    /// Decodes `latent` `[B, C, F', H', W']` to `[B, 3, F, H, W]` (float, about [-1, 1]).
    pub fn forward(&self, latent: &Tensor, inputs: DecodeInputs) -> LtxResult<Tensor> {
        self.check_latent(latent)?;
        let DecodeInputs {
            timestep,
            noise,
            mut spatial_noise,
        } = inputs;
        let b = latent.dim(0)?;
        let dtype = latent.dtype();
        let mut x = latent.clone();
        let mut scaled_timestep = None;
        if let Some(tc) = &self.timestep_conditioning {
            let noise = match noise {
                Some(n) if n.dims() == latent.dims() => n.to_dtype(dtype)?,
                Some(n) => {
                    return Err(Error::InvalidInput(format!(
                        "decoder noise has shape {:?}, the latent {:?}",
                        n.dims(),
                        latent.dims()
                    )))
                }
                None => {
                    Tensor::randn(0f32, 1f32, latent.dims(), latent.device())?.to_dtype(dtype)?
                }
            };
            // Same operation order as the reference: noise·s + (1 − s)·x.
            x = ((noise * DECODE_NOISE_SCALE)? + (x * (1.0 - DECODE_NOISE_SCALE))?)?;
            let t = match timestep {
                Some(t) if t.dims() == [b] => t.to_dtype(dtype)?,
                Some(t) => {
                    return Err(Error::InvalidInput(format!(
                        "decode timestep must have shape [{b}], got {:?}",
                        t.dims()
                    )))
                }
                None => {
                    Tensor::full(DECODE_TIMESTEP as f32, b, latent.device())?.to_dtype(dtype)?
                }
            };
            scaled_timestep = Some(t.broadcast_mul(&tc.scale_multiplier.to_dtype(dtype)?)?);
        }
        x = self.per_channel_statistics.un_normalize(&x)?;
        x = self.conv_in.forward(&x, self.causal)?;
        for block in &self.up_blocks {
            x = match block {
                UpBlock::Mid(m) => m.forward(
                    &x,
                    self.causal,
                    scaled_timestep.as_ref(),
                    spatial_noise.as_deref_mut(),
                )?,
                UpBlock::Res(r) => {
                    r.forward(&x, self.causal, None, spatial_noise.as_deref_mut())?
                }
                UpBlock::DepthToSpace(u) => u.forward(&x, self.causal)?,
            };
        }
        let ada = match (&self.timestep_conditioning, &scaled_timestep) {
            (Some(tc), Some(t)) => {
                let emb = tc
                    .last_time_embedder
                    .forward(&t.flatten_all()?, x.dtype())?;
                let c = tc.last_scale_shift_table.dim(1)?;
                let ada = tc
                    .last_scale_shift_table
                    .to_dtype(x.dtype())?
                    .reshape((1, LAST_ADA_ROWS, c))?
                    .broadcast_add(&emb.reshape((b, LAST_ADA_ROWS, c))?)?;
                // Rows: shift, scale; `norm_silu` takes (scale, shift).
                Some((ada.get_on_dim(1, 1)?, ada.get_on_dim(1, 0)?))
            }
            _ => None,
        };
        x = norm_silu(&self.conv_norm_out, &x, ada.as_ref().map(|(s, t)| (s, t)))?;
        x = self.conv_out.forward(&x, self.causal)?;
        Ok(unpatchify(&x, self.patch_size)?)
    }
}

/// `decode_video`'s pixel mapping: `[B=1, 3, F, H, W]` in [-1, 1] → `[F, H, W, 3]` f32 in
/// [0, 1], computed as `((x + 1) · 0.5).clamp(0, 1)` like the reference's chunks.
pub fn to_rgb_frames(video: &Tensor) -> Result<Tensor> {
    let x = video.get(0)?.to_dtype(DType::F32)?;
    ((x + 1.0)? * 0.5)?
        .clamp(0f32, 1f32)?
        .permute((1, 2, 3, 0))?
        .contiguous()
}

/// `[F, H, W, 3]` floats in [0, 1] → u8 as `x · 255` truncated (torch's `.to(torch.uint8)`).
pub fn rgb_frames_to_uint8(frames: &Tensor) -> Result<Tensor> {
    // `to_dtype(U8)` on candle truncates toward zero for non-negative values, like torch.
    (frames.to_dtype(DType::F32)? * 255.0)?.to_dtype(DType::U8)
}

/// [`to_rgb_frames`] then [`rgb_frames_to_uint8`]: `[B=1, 3, F, H, W]` → `[F, H, W, 3]` u8.
pub fn to_uint8_frames(video: &Tensor) -> Result<Tensor> {
    rgb_frames_to_uint8(&to_rgb_frames(video)?)
}

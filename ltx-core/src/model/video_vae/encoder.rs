//! Port of `VideoEncoder` (`ltx_core/model/video_vae/video_vae.py`): pixels → normalised latent.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::convolution::CausalConv3d;
use super::model_configurator::{EncoderBlock, LogVarianceType, VideoVaeConfig};
use super::ops::{patchify, PerChannelStatistics};
use super::resnet::{build_norm, norm_silu, ResnetBlock3D, UNetMidBlock3D};
use super::sampling::SpaceToDepthDownsample;
use crate::model::common::normalization::Norm;
use crate::types::SpatioTemporalScaleFactors;
use crate::{Error, Result as LtxResult};

/// Temporal compression of the released layouts (LTX-2, 2.3, 2.5): `1 + 8k` frames → `1 + k`
/// latents. The models use their own, from the config ([`VideoVaeConfig::encoder_scale_factors`]).
pub const TIME_SCALE: usize = 8;
/// Spatial compression of the released layouts (patchify 4 × three 2× stages); see [`TIME_SCALE`].
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

/// The video VAE encoder: `[B, 3, F, H, W]` in [-1, 1] → `[B, C, 1 + (F−1)/t, H/s, W/s]` with
/// the compression `(t, s)` of the blocks (`(8, 32)` for the released layouts).
pub struct VideoEncoder {
    patch_size: usize,
    latent_channels: usize,
    scale_factors: SpatioTemporalScaleFactors,
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
        let out_ch = match cfg.latent_log_var {
            LogVarianceType::PerChannel => 2 * latent,
            LogVarianceType::Uniform | LogVarianceType::Constant => latent + 1,
            LogVarianceType::None => latent,
        };
        Ok(Self {
            patch_size: cfg.patch_size,
            latent_channels: latent,
            scale_factors: cfg.encoder_scale_factors()?,
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

    /// Frames, rows and columns per latent (8 × 32 × 32 for the released layouts).
    pub fn scale_factors(&self) -> SpatioTemporalScaleFactors {
        self.scale_factors
    }

    /// Encodes `video` `[B, 3, F, H, W]`. Like the reference, a frame count that is not `1 + t·k`
    /// is cropped (the trailing frames are dropped, with a warning); H and W must be multiples
    /// of the spatial compression (see [`Self::scale_factors`]).
    pub fn forward(&self, video: &Tensor) -> LtxResult<Tensor> {
        let video = crop_to_valid_frames(video, self.scale_factors)?;
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

/// Checks `[B, 3, F, H, W]` against the compression and drops the last `(F − 1) mod t` frames, as
/// the reference does.
pub(crate) fn crop_to_valid_frames(
    video: &Tensor,
    scale: SpatioTemporalScaleFactors,
) -> LtxResult<Tensor> {
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
    if h % scale.height != 0 || w % scale.width != 0 || h == 0 || w == 0 {
        return Err(Error::InvalidInput(format!(
            "video size {h}x{w} is not a positive multiple of {}x{}",
            scale.height, scale.width
        )));
    }
    let extra = (f - 1) % scale.time;
    if extra == 0 {
        return Ok(video.clone());
    }
    tracing::warn!(
        frames = f,
        cropped = extra,
        time_scale = scale.time,
        "frame count is not 1 + time_scale·k; cropping the last frames"
    );
    Ok(video.narrow(2, 0, f - extra)?)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use candle_core::{DType, Device};
    use serde_json::json;

    use super::*;
    use crate::loader::synthetic::random_weights;
    use crate::loader::StateDict;
    use crate::model::video_vae::{DecodeInputs, VideoDecoder};

    /// A VAE that is not 32×32×8: patch 2, one space and one space-time step (8×8×2).
    #[test]
    fn compression_follows_the_blocks() {
        let cfg = VideoVaeConfig::from_checkpoint_config(&json!({"vae": {
            "latent_channels": 8, "patch_size": 2, "decoder_base_channels": 8,
            "timestep_conditioning": false, "spatial_padding_mode": "zeros",
            "encoder_blocks": [["compress_space_res", {"multiplier": 1}],
                               ["compress_all_res", {"multiplier": 1}]],
            "decoder_blocks": [["compress_all", {"multiplier": 1}],
                               ["compress_space", {"multiplier": 1}]],
        }}))
        .unwrap();
        let dev = Device::Cpu;
        let w = random_weights(1, DType::F32, "", |vb| VideoEncoder::new(&cfg, vb)).unwrap();
        let encoder = VideoEncoder::new(
            &cfg,
            Arc::new(StateDict::from_tensors(w)).var_builder(DType::F32, &dev),
        )
        .unwrap();
        let want = SpatioTemporalScaleFactors {
            time: 2,
            width: 8,
            height: 8,
        };
        assert_eq!(encoder.scale_factors(), want);
        // 6 frames: cropped to 1 + 2·2
        let video = Tensor::zeros((1, 3, 6, 16, 24), DType::F32, &dev).unwrap();
        let latent = encoder.forward(&video).unwrap();
        assert_eq!(latent.dims(), &[1, 8, 3, 2, 3]);
        let err = encoder
            .forward(&Tensor::zeros((1, 3, 5, 12, 24), DType::F32, &dev).unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("8x8"), "{err}");

        let w = random_weights(2, DType::F32, "", |vb| VideoDecoder::new(&cfg, vb)).unwrap();
        let decoder = VideoDecoder::new(
            &cfg,
            Arc::new(StateDict::from_tensors(w)).var_builder(DType::F32, &dev),
        )
        .unwrap();
        assert_eq!(decoder.scale_factors(), want);
        let video = decoder.forward(&latent, DecodeInputs::default()).unwrap();
        assert_eq!(video.dims(), &[1, 3, 5, 16, 24]);
    }
}

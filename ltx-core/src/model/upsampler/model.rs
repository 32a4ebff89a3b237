//! Port of `ltx_core/model/upsampler/model.py`.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::model_configurator::{LatentUpsamplerConfig, UpsamplerKind};
use super::pixel_shuffle::pixel_shuffle_nd;
use super::res_block::ResBlock;
use super::spatial_rational_resampler::SpatialRationalResampler;
use crate::kernels::conv3d::{Conv3dSpec, Conv3dWeights, PadMode};
use crate::model::common::normalization::GroupNorm;
use crate::model::video_vae::ops::PerChannelStatistics;

/// A 3×3(×3) convolution with zero padding 1 on every convolved axis: `nn.Conv2d` over
/// `[N, C, H, W]` or `nn.Conv3d` over `[B, C, F, H, W]`. Both run on the Conv3d kernels (a 2-D
/// convolution is a 3-D one with a single temporal tap), so the CPU gets the implicit-GEMM /
/// Winograd path instead of im2col.
pub struct ConvNd {
    conv: Conv3dWeights,
    dims: usize,
}

impl ConvNd {
    pub fn new(dims: usize, cin: usize, cout: usize, vb: VarBuilder) -> Result<Self> {
        let weight = if dims == 2 {
            vb.get((cout, cin, 3, 3), "weight")?.unsqueeze(2)?
        } else {
            vb.get((cout, cin, 3, 3, 3), "weight")?
        };
        let bias = vb.get(cout, "bias")?;
        Ok(Self {
            conv: Conv3dWeights::new(&weight, Some(&bias))?,
            dims,
        })
    }

    /// The 2-D convolution applied to every frame of `[B, C, F, H, W]`.
    pub fn forward_per_frame(&self, x: &Tensor) -> Result<Tensor> {
        self.conv.forward(x, Self::spec())
    }

    fn spec() -> Conv3dSpec {
        Conv3dSpec {
            time_pad: (0, 0),
            time_stride: 1,
            spatial_stride: 1,
            spatial_pad: 1,
            pad_mode: PadMode::Zeros,
        }
    }
}

impl Module for ConvNd {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.dims == 2 {
            return self
                .conv
                .forward(&x.unsqueeze(2)?, Self::spec())?
                .squeeze(2);
        }
        // zero frames around the clip (the Conv3d kernel's own time padding replicates)
        let x = x.pad_with_zeros(2, 1, 1)?;
        self.conv.forward(&x, Self::spec())
    }
}

enum Upsampler {
    /// Conv2d to 4·C + 2-D pixel shuffle, per frame.
    Spatial(ConvNd),
    /// Conv3d to 2·C + temporal pixel shuffle, first frame dropped.
    Temporal(ConvNd),
    /// Conv3d to 8·C + 3-D pixel shuffle, first frame dropped.
    SpatioTemporal(ConvNd),
    Rational(SpatialRationalResampler),
}

/// Upsamples VAE latents spatially and/or temporally.
pub struct LatentUpsampler {
    cfg: LatentUpsamplerConfig,
    initial_conv: ConvNd,
    initial_norm: GroupNorm,
    res_blocks: Vec<ResBlock>,
    upsampler: Upsampler,
    post_upsample_res_blocks: Vec<ResBlock>,
    final_conv: ConvNd,
}

impl LatentUpsampler {
    pub fn new(cfg: &LatentUpsamplerConfig, vb: VarBuilder) -> crate::Result<Self> {
        cfg.validate()?;
        let (dims, mid) = (cfg.dims, cfg.mid_channels);
        let blocks = |name: &str| -> Result<Vec<ResBlock>> {
            (0..cfg.num_blocks_per_stage)
                .map(|i| ResBlock::new(mid, dims, vb.pp(name).pp(i)))
                .collect()
        };
        let up = vb.pp("upsampler");
        let upsampler = match cfg.kind()? {
            UpsamplerKind::SpatioTemporal => {
                Upsampler::SpatioTemporal(ConvNd::new(3, mid, 8 * mid, up.pp("0"))?)
            }
            UpsamplerKind::Rational { num, den } => {
                Upsampler::Rational(SpatialRationalResampler::new(mid, num, den, up)?)
            }
            UpsamplerKind::Spatial => Upsampler::Spatial(ConvNd::new(2, mid, 4 * mid, up.pp("0"))?),
            UpsamplerKind::Temporal => {
                Upsampler::Temporal(ConvNd::new(3, mid, 2 * mid, up.pp("0"))?)
            }
        };
        Ok(Self {
            cfg: cfg.clone(),
            initial_conv: ConvNd::new(dims, cfg.in_channels, mid, vb.pp("initial_conv"))?,
            initial_norm: GroupNorm::new(32, mid, 1e-5, vb.pp("initial_norm"))?,
            res_blocks: blocks("res_blocks")?,
            upsampler,
            post_upsample_res_blocks: blocks("post_upsample_res_blocks")?,
            final_conv: ConvNd::new(dims, mid, cfg.in_channels, vb.pp("final_conv"))?,
        })
    }

    pub fn config(&self) -> &LatentUpsamplerConfig {
        &self.cfg
    }

    /// `[B, C, F, H, W]` -> the upsampled latent.
    pub fn forward(&self, latent: &Tensor) -> crate::Result<Tensor> {
        let dims = latent.dims();
        let &[b, c, f, h, w] = dims else {
            return Err(crate::error::bad_shape(
                "upsampler latent",
                dims,
                "[B, C, F, H, W]",
            ));
        };
        if c != self.cfg.in_channels {
            return Err(crate::error::bad_shape(
                "upsampler latent",
                dims,
                format!(
                    "{} channels (the upsampler's in_channels)",
                    self.cfg.in_channels
                ),
            ));
        }
        if self.cfg.dims == 2 {
            // frames into the batch
            let x = latent.permute((0, 2, 1, 3, 4))?.reshape((b * f, c, h, w))?;
            let y = self.body(&x, |x| match &self.upsampler {
                Upsampler::Spatial(conv) => pixel_shuffle_nd(&conv.forward(x)?, 2, (2, 2, 1)),
                _ => candle_core::bail!("a dims-2 upsampler is the pixel-shuffle x2 only"),
            })?;
            let (_, c2, h2, w2) = y.dims4()?;
            return Ok(y
                .reshape((b, f, c2, h2, w2))?
                .permute((0, 2, 1, 3, 4))?
                .contiguous()?);
        }
        Ok(self.body(latent, |x| match &self.upsampler {
            Upsampler::Temporal(conv) => {
                let y = pixel_shuffle_nd(&conv.forward(x)?, 1, (2, 1, 1))?;
                y.narrow(2, 1, y.dim(2)? - 1)
            }
            Upsampler::SpatioTemporal(conv) => {
                let y = pixel_shuffle_nd(&conv.forward(x)?, 3, (2, 2, 2))?;
                y.narrow(2, 1, y.dim(2)? - 1)
            }
            Upsampler::Rational(r) => r.forward(x),
            Upsampler::Spatial(conv) => {
                // per frame: conv, then the 2-D shuffle of every frame
                let y = conv.forward_per_frame(x)?;
                let (b, ch, f, h, w) = y.dims5()?;
                let c = ch / 4;
                y.reshape(vec![b, c, 2, 2, f, h, w])?
                    .permute(vec![0, 1, 4, 5, 2, 6, 3])?
                    .contiguous()?
                    .reshape((b, c, f, h * 2, w * 2))
            }
        })?)
    }

    /// initial conv/norm/SiLU, res blocks, `upsample`, res blocks, final conv.
    fn body(&self, x: &Tensor, upsample: impl Fn(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
        let mut x = self
            .initial_norm
            .forward(&self.initial_conv.forward(x)?)?
            .silu()?;
        for block in &self.res_blocks {
            x = block.forward(&x)?;
        }
        x = upsample(&x)?;
        for block in &self.post_upsample_res_blocks {
            x = block.forward(&x)?;
        }
        self.final_conv.forward(&x)
    }
}

/// Un-normalises with the VAE encoder's latent statistics, upsamples, normalises again.
pub fn upsample_video(
    latent: &Tensor,
    statistics: &PerChannelStatistics,
    upsampler: &LatentUpsampler,
) -> crate::Result<Tensor> {
    let x = statistics.un_normalize(latent)?;
    let x = upsampler.forward(&x)?;
    Ok(statistics.normalize(&x)?)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use candle_core::{DType, Device, Tensor};
    use serde_json::json;

    use super::*;
    use crate::loader::synthetic::random_weights;
    use crate::loader::StateDict;
    use crate::Error;

    fn build(cfg: &LatentUpsamplerConfig) -> LatentUpsampler {
        let w = random_weights(3, DType::F32, "", |vb| LatentUpsampler::new(cfg, vb)).unwrap();
        let sd = Arc::new(StateDict::from_tensors(w));
        LatentUpsampler::new(cfg, sd.var_builder(DType::F32, &Device::Cpu)).unwrap()
    }

    #[test]
    fn unsupported_configs_are_typed_errors() {
        for bad in [
            json!({"rational_resampler": true, "spatial_scale": 3.0}),
            json!({"spatial_scale": 1.5}),
            json!({"spatial_upsample": false, "temporal_upsample": false}),
            json!({"dims": 4}),
            json!({"mid_channels": 48}),
            json!({"dims": 2, "rational_resampler": true, "spatial_scale": 1.5}),
            json!({"in_channels": "many"}),
        ] {
            let err = LatentUpsamplerConfig::from_checkpoint_config(&bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::UnsupportedConfig { .. } | Error::InvalidConfig(_)
                ),
                "{bad}: {err}"
            );
        }
        // the released defaults parse
        let cfg = LatentUpsamplerConfig::from_checkpoint_config(&json!({})).unwrap();
        assert_eq!((cfg.in_channels, cfg.mid_channels), (128, 512));
    }

    #[test]
    fn wrong_channel_count_and_missing_statistics() {
        let cfg = LatentUpsamplerConfig::from_checkpoint_config(&json!({
            "in_channels": 4, "mid_channels": 32, "num_blocks_per_stage": 0
        }))
        .unwrap();
        let up = build(&cfg);
        let ok = up
            .forward(&Tensor::zeros((1, 4, 1, 2, 2), DType::F32, &Device::Cpu).unwrap())
            .unwrap();
        assert_eq!(ok.dims(), &[1, 4, 1, 4, 4]);
        let err = up
            .forward(&Tensor::zeros((1, 8, 1, 2, 2), DType::F32, &Device::Cpu).unwrap())
            .unwrap_err();
        assert!(matches!(err, Error::TensorShape { .. }), "{err}");
        // statistics come from the VAE checkpoint: a missing key is a typed error naming it
        let empty = Arc::new(StateDict::from_tensors(Default::default()));
        let err: Error = PerChannelStatistics::new(4, empty.var_builder(DType::F32, &Device::Cpu))
            .unwrap_err()
            .into();
        assert!(matches!(err, Error::MissingWeight { .. }), "{err}");
    }
}

//! Port of `ltx_core/model/upsampler/model_configurator.py`: the upsampler config is the file's
//! flat `config` metadata (no section key, no weight prefix).

use serde::Deserialize;
use serde_json::Value;

use crate::error::{unsupported, Error, Result};
use crate::loader::SDOps;

fn d_in() -> usize {
    128
}
fn d_mid() -> usize {
    512
}
fn d_blocks() -> usize {
    4
}
fn d_dims() -> usize {
    3
}
fn d_true() -> bool {
    true
}
fn d_scale() -> f64 {
    2.0
}

/// Latent upsampler settings, with the reference configurator's defaults.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct LatentUpsamplerConfig {
    #[serde(default = "d_in")]
    pub in_channels: usize,
    #[serde(default = "d_mid")]
    pub mid_channels: usize,
    #[serde(default = "d_blocks")]
    pub num_blocks_per_stage: usize,
    /// 3: Conv3d stages; 2: Conv2d per frame.
    #[serde(default = "d_dims")]
    pub dims: usize,
    #[serde(default = "d_true")]
    pub spatial_upsample: bool,
    #[serde(default)]
    pub temporal_upsample: bool,
    #[serde(default = "d_scale")]
    pub spatial_scale: f64,
    #[serde(default)]
    pub rational_resampler: bool,
}

/// Which upsampling stage a config builds (`LatentUpsampler.__init__`'s branches).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpsamplerKind {
    /// Conv2d to 4·C + 2-D pixel shuffle, per frame (spatial x2).
    Spatial,
    /// `SpatialRationalResampler`: pixel shuffle by `num`, blur-downsample by `den`.
    Rational { num: usize, den: usize },
    /// Conv3d to 2·C + temporal pixel shuffle, first frame dropped (F → 2F − 1).
    Temporal,
    /// Conv3d to 8·C + 3-D pixel shuffle, first frame dropped.
    SpatioTemporal,
}

/// `(num, den)` of a rational spatial scale: up by `num` (pixel shuffle), down by `den` (blur).
pub fn rational_for_scale(scale: f64) -> Result<(usize, usize)> {
    const TABLE: [(f64, (usize, usize)); 4] =
        [(0.75, (3, 4)), (1.5, (3, 2)), (2.0, (2, 1)), (4.0, (4, 1))];
    TABLE
        .iter()
        .find(|(s, _)| *s == scale)
        .map(|&(_, r)| r)
        .ok_or_else(|| unsupported("spatial_scale", scale, "0.75, 1.5, 2.0 or 4.0"))
}

impl LatentUpsamplerConfig {
    /// From a file's `config` metadata (the flat dict).
    pub fn from_checkpoint_config(config: &Value) -> Result<Self> {
        let cfg: Self = match config {
            Value::Null => serde_json::from_value(Value::Object(Default::default())),
            v => serde_json::from_value(v.clone()),
        }
        .map_err(|e| Error::InvalidConfig(format!("latent upsampler config: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The upsampling stage, as the reference picks it: spatial and temporal together ignore
    /// `rational_resampler` and `spatial_scale`; temporal alone ignores both too (LTX-2.5's
    /// temporal file says `rational_resampler: true`).
    pub fn kind(&self) -> Result<UpsamplerKind> {
        match (self.spatial_upsample, self.temporal_upsample) {
            (true, true) => Ok(UpsamplerKind::SpatioTemporal),
            (false, true) => Ok(UpsamplerKind::Temporal),
            (true, false) if self.rational_resampler => {
                let (num, den) = rational_for_scale(self.spatial_scale)?;
                Ok(UpsamplerKind::Rational { num, den })
            }
            // the pixel-shuffle path always doubles; another scale needs the rational resampler
            (true, false) if self.spatial_scale != 2.0 => Err(unsupported(
                "spatial_scale",
                self.spatial_scale,
                "2.0 (or set rational_resampler)",
            )),
            (true, false) => Ok(UpsamplerKind::Spatial),
            (false, false) => Err(Error::InvalidConfig(
                "latent upsampler: spatial_upsample or temporal_upsample must be true".into(),
            )),
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.dims != 2 && self.dims != 3 {
            return Err(unsupported("dims", self.dims, "2 or 3"));
        }
        let kind = self.kind()?;
        if self.dims == 2 && self.temporal_upsample {
            return Err(unsupported("temporal_upsample", true, "false with dims 2"));
        }
        if self.dims == 2 && matches!(kind, UpsamplerKind::Rational { .. }) {
            // the reference feeds 4-D frames to the 5-D resampler and fails
            return Err(unsupported("rational_resampler", true, "false with dims 2"));
        }
        if self.mid_channels == 0 || self.mid_channels % 32 != 0 {
            return Err(unsupported(
                "mid_channels",
                self.mid_channels,
                "a positive multiple of 32 (GroupNorm(32))",
            ));
        }
        if self.in_channels == 0 {
            return Err(unsupported("in_channels", 0, "at least 1"));
        }
        Ok(())
    }
}

/// The keys of an upsampler file: its top-level modules, no prefix.
pub fn latent_upsampler_keys() -> SDOps {
    [
        "initial_conv.",
        "initial_norm.",
        "res_blocks.",
        "upsampler.",
        "post_upsample_res_blocks.",
        "final_conv.",
    ]
    .into_iter()
    .fold(SDOps::new("LATENT_UPSAMPLER_KEYS"), |ops, p| {
        ops.with_matching(p, "")
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::video_vae::presets::released_ltx25_config;

    fn kind(config: &Value) -> UpsamplerKind {
        LatentUpsamplerConfig::from_checkpoint_config(config)
            .unwrap()
            .kind()
            .unwrap()
    }

    #[test]
    fn ltx25_headers_pick_the_reference_stages() {
        let spatial = released_ltx25_config("ltx-2.5-latent-spatial-upscaler-x2-bf16-1.0");
        assert_eq!(kind(&spatial), UpsamplerKind::Spatial);
        // `rational_resampler: true` with temporal upsampling only: the reference ignores it
        let temporal = released_ltx25_config("ltx-2.5-latent-temporal-upscaler-x2-bf16-1.0");
        assert_eq!(kind(&temporal), UpsamplerKind::Temporal);
        let cfg = LatentUpsamplerConfig::from_checkpoint_config(&temporal).unwrap();
        assert_eq!((cfg.mid_channels, cfg.num_blocks_per_stage), (512, 4));
    }

    #[test]
    fn spatio_temporal_ignores_the_rational_scale() {
        let both =
            json!({"temporal_upsample": true, "rational_resampler": true, "spatial_scale": 3.0});
        assert_eq!(kind(&both), UpsamplerKind::SpatioTemporal);
        let rational = json!({"rational_resampler": true, "spatial_scale": 1.5});
        assert_eq!(kind(&rational), UpsamplerKind::Rational { num: 3, den: 2 });
    }
}

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

    pub fn validate(&self) -> Result<()> {
        if self.dims != 2 && self.dims != 3 {
            return Err(unsupported("dims", self.dims, "2 or 3"));
        }
        if !self.spatial_upsample && !self.temporal_upsample {
            return Err(Error::InvalidConfig(
                "latent upsampler: spatial_upsample or temporal_upsample must be true".into(),
            ));
        }
        if self.dims == 2 && self.temporal_upsample {
            return Err(unsupported("temporal_upsample", true, "false with dims 2"));
        }
        if self.dims == 2 && self.spatial_upsample && self.rational_resampler {
            // the reference feeds 4-D frames to the 5-D resampler and fails
            return Err(unsupported("rational_resampler", true, "false with dims 2"));
        }
        if self.spatial_upsample && self.rational_resampler {
            rational_for_scale(self.spatial_scale)?;
        } else if self.spatial_upsample && self.spatial_scale != 2.0 && !self.temporal_upsample {
            // the pixel-shuffle path always doubles; another scale needs the rational resampler
            return Err(unsupported(
                "spatial_scale",
                self.spatial_scale,
                "2.0 (or set rational_resampler)",
            ));
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

//! Port of `ltx_core/model/video_vae/model_configurator.py` and `enums.py`: the `vae` section of
//! a checkpoint's config, typed, with the reference configurators' defaults, plus the key filters.

use serde::Deserialize;
use serde_json::Value;

use crate::error::unsupported;
use crate::kernels::conv3d::PadMode;
use crate::loader::SDOps;
use crate::types::SpatioTemporalScaleFactors;
use crate::{Error, Result};

/// `_class_name` of the conv VAE (`_CONV_VAE_CLASS_NAME`); the reference builds the diffusion
/// decoder for any other name.
pub const CONV_VAE_CLASS_NAME: &str = "CausalVideoAutoencoder";

/// `norm_layer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum NormLayerType {
    #[serde(rename = "group_norm")]
    GroupNorm,
    #[serde(rename = "pixel_norm")]
    PixelNorm,
}

/// `latent_log_var`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogVarianceType {
    PerChannel,
    Uniform,
    Constant,
    None,
}

/// `spatial_padding_mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaddingModeType {
    Zeros,
    Reflect,
    Replicate,
    Circular,
}

impl PaddingModeType {
    pub fn pad_mode(self) -> Result<PadMode> {
        match self {
            Self::Zeros => Ok(PadMode::Zeros),
            Self::Reflect => Ok(PadMode::Reflect),
            Self::Replicate => Ok(PadMode::Replicate),
            Self::Circular => Err(unsupported(
                "vae.spatial_padding_mode",
                "circular",
                "zeros|reflect|replicate",
            )),
        }
    }
}

/// One entry of `encoder_blocks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncoderBlock {
    ResX { num_layers: usize },
    ResXY { multiplier: usize },
    CompressTime,
    CompressSpace,
    CompressAll,
    CompressAllXY { multiplier: usize },
    CompressAllRes { multiplier: usize },
    CompressSpaceRes { multiplier: usize },
    CompressTimeRes { multiplier: usize },
}

impl EncoderBlock {
    /// Whether the block halves `(time, space)`: the `compress_time*`, `compress_space*` and
    /// `compress_all*` names (`SpatioTemporalScaleFactors.from_blocks`).
    pub fn compression(&self) -> (bool, bool) {
        match self {
            Self::CompressTime | Self::CompressTimeRes { .. } => (true, false),
            Self::CompressSpace | Self::CompressSpaceRes { .. } => (false, true),
            Self::CompressAll | Self::CompressAllXY { .. } | Self::CompressAllRes { .. } => {
                (true, true)
            }
            Self::ResX { .. } | Self::ResXY { .. } => (false, false),
        }
    }
}

/// One entry of `decoder_blocks` (listed encoder-side first; the decoder builds them reversed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecoderBlock {
    ResX {
        num_layers: usize,
        inject_noise: bool,
    },
    ResXY {
        multiplier: usize,
        inject_noise: bool,
    },
    CompressTime {
        multiplier: usize,
    },
    CompressSpace {
        multiplier: usize,
    },
    CompressAll {
        residual: bool,
        multiplier: usize,
    },
}

impl DecoderBlock {
    /// Whether the block doubles `(time, space)` (see [`EncoderBlock::compression`]).
    pub fn compression(&self) -> (bool, bool) {
        match self {
            Self::CompressTime { .. } => (true, false),
            Self::CompressSpace { .. } => (false, true),
            Self::CompressAll { .. } => (true, true),
            Self::ResX { .. } | Self::ResXY { .. } => (false, false),
        }
    }
}

/// `SpatioTemporalScaleFactors.from_blocks`: `patch_size · 2^(spatial steps)` on H and W,
/// `2^(temporal steps)` on time (a block's channel multiplier does not matter).
fn scale_factors(
    patch_size: usize,
    steps: impl Iterator<Item = (bool, bool)>,
) -> SpatioTemporalScaleFactors {
    let (time, space) = steps.fold((1, patch_size), |(t, s), (dt, ds)| {
        (if dt { 2 * t } else { t }, if ds { 2 * s } else { s })
    });
    SpatioTemporalScaleFactors {
        time,
        width: space,
        height: space,
    }
}

/// The raw `vae` config section. Unknown keys are ignored, as in the reference.
#[derive(Clone, Debug, Deserialize)]
pub struct VideoVaeConfig {
    /// Absent or [`CONV_VAE_CLASS_NAME`]; anything else names the diffusion VAE (unsupported).
    #[serde(default, rename = "_class_name")]
    pub class_name: Option<String>,
    #[serde(default = "default_dims")]
    pub dims: Value,
    #[serde(default = "default_3")]
    pub in_channels: usize,
    #[serde(default = "default_3")]
    pub out_channels: usize,
    #[serde(default = "default_128")]
    pub latent_channels: usize,
    #[serde(default = "default_4")]
    pub patch_size: usize,
    #[serde(default = "default_norm")]
    pub norm_layer: NormLayerType,
    #[serde(default = "default_log_var")]
    pub latent_log_var: LogVarianceType,
    #[serde(default)]
    pub encoder_blocks: Vec<(String, Value)>,
    #[serde(default)]
    pub decoder_blocks: Vec<(String, Value)>,
    /// Absent: the encoder pads with zeros, the decoder with reflection (configurator defaults).
    #[serde(default)]
    pub spatial_padding_mode: Option<PaddingModeType>,
    #[serde(default)]
    pub causal_decoder: bool,
    /// The decoder configurator defaults to `true` when the key is missing.
    #[serde(default = "default_true")]
    pub timestep_conditioning: bool,
    #[serde(default = "default_128")]
    pub decoder_base_channels: usize,
}

fn default_dims() -> Value {
    Value::from(3)
}
fn default_3() -> usize {
    3
}
fn default_4() -> usize {
    4
}
fn default_128() -> usize {
    128
}
fn default_true() -> bool {
    true
}
fn default_norm() -> NormLayerType {
    NormLayerType::PixelNorm
}
fn default_log_var() -> LogVarianceType {
    LogVarianceType::Uniform
}

impl VideoVaeConfig {
    /// Reads the `vae` section of a checkpoint config (an empty section gives the defaults).
    pub fn from_checkpoint_config(config: &Value) -> Result<Self> {
        let section = config
            .get("vae")
            .cloned()
            .unwrap_or_else(|| Value::Object(Default::default()));
        let cfg: Self = serde_json::from_value(section)
            .map_err(|e| Error::InvalidConfig(format!("vae: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        if let Some(name) = self
            .class_name
            .as_deref()
            .filter(|n| *n != CONV_VAE_CLASS_NAME)
        {
            // e.g. LTX-2.5's `CausalDiffusionVAE` (`ltx-2.5-video-vae-bf16`): a nested
            // encoder/decoder layout and a diffusion decoder, not this model
            return Err(unsupported("vae._class_name", name, CONV_VAE_CLASS_NAME));
        }
        if self.dims != 3 {
            return Err(unsupported("vae.dims", &self.dims, "3"));
        }
        if self.patch_size == 0 {
            return Err(unsupported("vae.patch_size", 0, "a positive integer"));
        }
        if self.latent_log_var == LogVarianceType::None {
            // The reference builds this but its forward cannot normalise half the channels.
            return Err(unsupported(
                "vae.latent_log_var",
                "none",
                "uniform|per_channel|constant",
            ));
        }
        self.encoder_blocks()?;
        self.decoder_blocks()?;
        Ok(())
    }

    /// The encoder's compression (`VideoEncoder.video_scale_factors`), from its blocks and
    /// `patch_size`: 8 × 32 × 32 for the released layouts.
    pub fn encoder_scale_factors(&self) -> Result<SpatioTemporalScaleFactors> {
        let blocks = self.encoder_blocks()?;
        Ok(scale_factors(
            self.patch_size,
            blocks.iter().map(EncoderBlock::compression),
        ))
    }

    /// The decoder's expansion (`ConvVideoDecoder.video_downscale_factors`), from its blocks and
    /// `patch_size`.
    pub fn decoder_scale_factors(&self) -> Result<SpatioTemporalScaleFactors> {
        let blocks = self.decoder_blocks()?;
        Ok(scale_factors(
            self.patch_size,
            blocks.iter().map(DecoderBlock::compression),
        ))
    }

    pub fn encoder_padding(&self) -> Result<PadMode> {
        self.spatial_padding_mode
            .unwrap_or(PaddingModeType::Zeros)
            .pad_mode()
    }

    pub fn decoder_padding(&self) -> Result<PadMode> {
        self.spatial_padding_mode
            .unwrap_or(PaddingModeType::Reflect)
            .pad_mode()
    }

    pub fn encoder_blocks(&self) -> Result<Vec<EncoderBlock>> {
        self.encoder_blocks
            .iter()
            .map(|(name, params)| {
                let p = BlockParams::new("vae.encoder_blocks", name, params)?;
                Ok(match name.as_str() {
                    "res_x" => EncoderBlock::ResX {
                        num_layers: p.required("num_layers")?,
                    },
                    "res_x_y" => EncoderBlock::ResXY {
                        multiplier: p.usize_or("multiplier", 2)?,
                    },
                    "compress_time" => EncoderBlock::CompressTime,
                    "compress_space" => EncoderBlock::CompressSpace,
                    "compress_all" => EncoderBlock::CompressAll,
                    "compress_all_x_y" => EncoderBlock::CompressAllXY {
                        multiplier: p.usize_or("multiplier", 2)?,
                    },
                    "compress_all_res" => EncoderBlock::CompressAllRes {
                        multiplier: p.usize_or("multiplier", 2)?,
                    },
                    "compress_space_res" => EncoderBlock::CompressSpaceRes {
                        multiplier: p.usize_or("multiplier", 2)?,
                    },
                    "compress_time_res" => EncoderBlock::CompressTimeRes {
                        multiplier: p.usize_or("multiplier", 2)?,
                    },
                    // 1.2.0's encoder self-attention block (`AttnBlock3D`); no released file has it
                    "attn" => {
                        return Err(unsupported(
                            "vae.encoder_blocks",
                            "attn",
                            "res_x|res_x_y|compress_*",
                        ))
                    }
                    other => return Err(unknown_block("vae.encoder_blocks", other)),
                })
            })
            .collect()
    }

    pub fn decoder_blocks(&self) -> Result<Vec<DecoderBlock>> {
        self.decoder_blocks
            .iter()
            .map(|(name, params)| {
                let p = BlockParams::new("vae.decoder_blocks", name, params)?;
                Ok(match name.as_str() {
                    "res_x" => DecoderBlock::ResX {
                        num_layers: p.required("num_layers")?,
                        inject_noise: p.bool_or("inject_noise", false)?,
                    },
                    "res_x_y" => DecoderBlock::ResXY {
                        multiplier: p.usize_or("multiplier", 2)?,
                        inject_noise: p.bool_or("inject_noise", false)?,
                    },
                    "compress_time" => DecoderBlock::CompressTime {
                        multiplier: p.usize_or("multiplier", 1)?,
                    },
                    "compress_space" => DecoderBlock::CompressSpace {
                        multiplier: p.usize_or("multiplier", 1)?,
                    },
                    "compress_all" => DecoderBlock::CompressAll {
                        residual: p.bool_or("residual", false)?,
                        multiplier: p.usize_or("multiplier", 1)?,
                    },
                    // The reference names it but cannot build it (UNetMidBlock3D has no attention).
                    "attn_res_x" => {
                        return Err(unsupported(
                            "vae.decoder_blocks",
                            "attn_res_x",
                            "res_x|res_x_y|compress_time|compress_space|compress_all",
                        ))
                    }
                    other => return Err(unknown_block("vae.decoder_blocks", other)),
                })
            })
            .collect()
    }
}

fn unknown_block(key: &str, name: &str) -> Error {
    Error::InvalidConfig(format!("{key}: unknown block `{name}`"))
}

/// A block's parameters: an integer (meaning `num_layers`) or an object.
struct BlockParams<'a> {
    key: String,
    obj: Option<&'a serde_json::Map<String, Value>>,
    int: Option<u64>,
}

impl<'a> BlockParams<'a> {
    fn new(key: &str, name: &str, v: &'a Value) -> Result<Self> {
        let key = format!("{key}.{name}");
        match v {
            Value::Object(obj) => Ok(Self {
                key,
                obj: Some(obj),
                int: None,
            }),
            Value::Number(n) if n.as_u64().is_some() => Ok(Self {
                key,
                obj: None,
                int: n.as_u64(),
            }),
            other => Err(Error::InvalidConfig(format!(
                "{key}: parameters must be an integer or an object, found {other}"
            ))),
        }
    }

    fn get(&self, name: &str) -> Option<&'a Value> {
        self.obj.and_then(|o| o.get(name))
    }

    fn required(&self, name: &str) -> Result<usize> {
        if name == "num_layers" {
            if let Some(n) = self.int {
                return Ok(n as usize);
            }
        }
        match self.get(name) {
            Some(v) => as_usize(&self.key, name, v),
            None => Err(Error::InvalidConfig(format!(
                "{}: missing `{name}`",
                self.key
            ))),
        }
    }

    fn usize_or(&self, name: &str, default: usize) -> Result<usize> {
        self.get(name)
            .map_or(Ok(default), |v| as_usize(&self.key, name, v))
    }

    fn bool_or(&self, name: &str, default: bool) -> Result<bool> {
        match self.get(name) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(Error::InvalidConfig(format!(
                "{}.{name}: expected a boolean, found {other}",
                self.key
            ))),
        }
    }
}

fn as_usize(key: &str, name: &str, v: &Value) -> Result<usize> {
    v.as_u64()
        .filter(|&n| n > 0)
        .map(|n| n as usize)
        .ok_or_else(|| {
            Error::InvalidConfig(format!(
                "{key}.{name}: expected a positive integer, found {v}"
            ))
        })
}

/// Keys of the video encoder in a single-file checkpoint (`VAE_ENCODER_COMFY_KEYS_FILTER`).
pub fn vae_encoder_keys_filter() -> SDOps {
    SDOps::new("VAE_ENCODER_COMFY_KEYS_FILTER")
        .with_matching("vae.encoder.", "")
        .with_matching("vae.per_channel_statistics.", "")
        // the bare keys of a per-component VAE file (LTX-2.5's `vae/`, reference 1.2.0)
        .with_matching("encoder.", "")
        .with_matching("per_channel_statistics.", "")
        .with_replacement("vae.encoder.", "")
        .with_replacement("vae.per_channel_statistics.", "per_channel_statistics.")
        .with_replacement("encoder.", "")
}

/// Keys of the video decoder in a single-file checkpoint (`VAE_DECODER_COMFY_KEYS_FILTER`).
pub fn vae_decoder_keys_filter() -> SDOps {
    SDOps::new("VAE_DECODER_COMFY_KEYS_FILTER")
        .with_matching("vae.decoder.", "")
        .with_matching("vae.per_channel_statistics.", "")
        .with_matching("decoder.", "")
        .with_matching("per_channel_statistics.", "")
        .with_replacement("vae.decoder.", "")
        .with_replacement("vae.per_channel_statistics.", "per_channel_statistics.")
        .with_replacement("decoder.", "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn vae_filters_take_monolith_and_split_keys() {
        let (enc, dec) = (vae_encoder_keys_filter(), vae_decoder_keys_filter());
        for key in [
            "vae.encoder.conv_in.conv.weight",
            "encoder.conv_in.conv.weight",
        ] {
            assert_eq!(
                enc.apply_to_key(key).as_deref(),
                Some("conv_in.conv.weight")
            );
            assert_eq!(dec.apply_to_key(key), None);
        }
        for key in [
            "vae.decoder.conv_out.conv.bias",
            "decoder.conv_out.conv.bias",
        ] {
            assert_eq!(dec.apply_to_key(key).as_deref(), Some("conv_out.conv.bias"));
        }
        for key in [
            "vae.per_channel_statistics.mean-of-means",
            "per_channel_statistics.mean-of-means",
        ] {
            let want = Some("per_channel_statistics.mean-of-means".to_string());
            assert_eq!(enc.apply_to_key(key), want);
            assert_eq!(dec.apply_to_key(key), want);
        }
        // the transformer's and the audio VAE's keys stay out
        assert_eq!(dec.apply_to_key("audio_vae.decoder.conv_in.weight"), None);
        assert_eq!(
            enc.apply_to_key("model.diffusion_model.patchify_proj.weight"),
            None
        );
    }

    #[test]
    fn defaults_match_the_configurators() {
        let cfg = VideoVaeConfig::from_checkpoint_config(&json!({})).unwrap();
        assert_eq!(cfg.latent_channels, 128);
        assert!(cfg.timestep_conditioning);
        assert_eq!(cfg.encoder_padding().unwrap(), PadMode::Zeros);
        assert_eq!(cfg.decoder_padding().unwrap(), PadMode::Reflect);
        assert_eq!(cfg.decoder_base_channels, 128);
    }

    #[test]
    fn scale_factors_come_from_the_blocks() {
        // a 16×16×4 variant: patch 2, three spatial and two temporal steps; multipliers do not count
        let cfg = VideoVaeConfig::from_checkpoint_config(&json!({"vae": {
            "patch_size": 2,
            "encoder_blocks": [["res_x", 1], ["compress_space_res", {"multiplier": 4}],
                               ["compress_time", {}], ["compress_all_x_y", {"multiplier": 1}], ["compress_space", 1],
                               ["res_x_y", {"multiplier": 2}]],
            "decoder_blocks": [["compress_all", {"residual": true, "multiplier": 2}],
                               ["compress_space", {}], ["res_x_y", 1], ["compress_time", {}],
                               ["compress_space", {"multiplier": 2}]],
        }}))
        .unwrap();
        let want = SpatioTemporalScaleFactors {
            time: 4,
            width: 16,
            height: 16,
        };
        assert_eq!(cfg.encoder_scale_factors().unwrap(), want);
        let dec = cfg.decoder_scale_factors().unwrap();
        assert_eq!((dec.time, dec.height, dec.width), (4, 16, 16));
        // no blocks: the patch alone
        let bare =
            VideoVaeConfig::from_checkpoint_config(&json!({"vae": {"patch_size": 4}})).unwrap();
        assert_eq!(bare.encoder_scale_factors().unwrap().as_array(), [1, 4, 4]);
    }

    #[test]
    fn diffusion_vae_and_encoder_attention_are_unsupported() {
        let key_of = |v: serde_json::Value| match VideoVaeConfig::from_checkpoint_config(&v) {
            Err(Error::UnsupportedConfig { key, .. }) => key,
            other => panic!("expected an unsupported-config error, got {other:?}"),
        };
        assert_eq!(
            key_of(json!({"vae": {"_class_name": "CausalDiffusionVAE"}})),
            "vae._class_name"
        );
        assert_eq!(
            key_of(json!({"vae": {"encoder_blocks": [["attn", {}]]}})),
            "vae.encoder_blocks"
        );
        let conv = json!({"vae": {"_class_name": CONV_VAE_CLASS_NAME}});
        assert!(VideoVaeConfig::from_checkpoint_config(&conv).is_ok());
    }

    #[test]
    fn parses_blocks_and_rejects_bad_ones() {
        let cfg = VideoVaeConfig::from_checkpoint_config(&json!({"vae": {
            "encoder_blocks": [["res_x", 2], ["compress_all_res", {"multiplier": 2}]],
            "decoder_blocks": [["res_x", {"num_layers": 5, "inject_noise": false}],
                               ["compress_all", {"residual": true, "multiplier": 2}]],
        }}))
        .unwrap();
        assert_eq!(
            cfg.encoder_blocks().unwrap(),
            vec![
                EncoderBlock::ResX { num_layers: 2 },
                EncoderBlock::CompressAllRes { multiplier: 2 }
            ]
        );
        assert_eq!(
            cfg.decoder_blocks().unwrap()[1],
            DecoderBlock::CompressAll {
                residual: true,
                multiplier: 2
            }
        );
        let bad = VideoVaeConfig::from_checkpoint_config(&json!({"vae": {
            "encoder_blocks": [["res_z", 1]]}}))
        .unwrap_err();
        assert!(bad.to_string().contains("res_z"), "{bad}");
        let dims =
            VideoVaeConfig::from_checkpoint_config(&json!({"vae": {"dims": [2, 1]}})).unwrap_err();
        assert!(
            matches!(dims, Error::UnsupportedConfig { ref key, .. } if key == "vae.dims"),
            "{dims}"
        );
        let attn = VideoVaeConfig::from_checkpoint_config(&json!({"vae": {
            "decoder_blocks": [["attn_res_x", {"num_layers": 1, "attention_head_dim": 8}]]}}))
        .unwrap_err();
        assert!(attn.to_string().contains("attn_res_x"));
        let pad = VideoVaeConfig::from_checkpoint_config(
            &json!({"vae": {"spatial_padding_mode": "mirror"}}),
        )
        .unwrap_err();
        assert!(pad.to_string().contains("mirror"), "{pad}");
        let missing = VideoVaeConfig::from_checkpoint_config(&json!({"vae": {
            "decoder_blocks": [["res_x", {"inject_noise": false}]]}}))
        .unwrap_err();
        assert!(missing.to_string().contains("num_layers"), "{missing}");
    }
}

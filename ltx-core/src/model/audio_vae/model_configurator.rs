//! Port of the audio-VAE half of `ltx_core/model/audio_vae/model_configurator.py`: the
//! `audio_vae` section of a checkpoint config and the key filters.

use serde_json::Value;

use crate::error::{unsupported, Error, Result};
use crate::loader::SDOps;

/// Which axis of the `[B, C, time, freq]` spectrogram the convolutions are causal along.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CausalityAxis {
    None,
    /// The time axis (dim 2): the released models.
    Height,
    /// The frequency axis (dim 3).
    Width,
    /// `Width` for the convolutions, but upsampling keeps every row.
    WidthCompatibility,
}

/// Normalisation inside the audio VAE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormType {
    /// GroupNorm(32, eps 1e-6).
    Group,
    /// PixelNorm over the channels (eps 1e-6).
    Pixel,
}

/// The audio VAE's settings (`audio_vae.model.params.ddconfig`, `preprocessing`, `variables`).
#[derive(Clone, Debug, PartialEq)]
pub struct AudioVaeConfig {
    pub ch: usize,
    pub out_ch: usize,
    pub ch_mult: Vec<usize>,
    pub num_res_blocks: usize,
    pub attn_resolutions: Vec<usize>,
    pub resolution: usize,
    pub z_channels: usize,
    pub double_z: bool,
    pub in_channels: usize,
    pub norm_type: NormType,
    pub causality_axis: CausalityAxis,
    pub mid_block_add_attention: bool,
    pub resamp_with_conv: bool,
    pub sample_rate: usize,
    pub mel_hop_length: usize,
    pub n_fft: usize,
    pub is_causal: bool,
    pub mel_bins: Option<usize>,
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

impl AudioVaeConfig {
    /// From a checkpoint config `{"audio_vae": {...}}`, with the reference configurators' defaults.
    pub fn from_checkpoint_config(config: &Value) -> Result<Self> {
        let root = config.get("audio_vae").cloned().unwrap_or(Value::Null);
        let dd = get(&root, &["model", "params", "ddconfig"])
            .cloned()
            .unwrap_or(Value::Null);
        let int = |v: Option<&Value>, key: &str, default: usize| -> Result<usize> {
            match v {
                None | Some(Value::Null) => Ok(default),
                Some(x) => x.as_u64().map(|x| x as usize).ok_or_else(|| {
                    Error::InvalidConfig(format!("audio_vae {key} must be an integer"))
                }),
            }
        };
        let boolean =
            |key: &str, default: bool| dd.get(key).and_then(Value::as_bool).unwrap_or(default);
        let list = |key: &str, default: Vec<usize>| -> Result<Vec<usize>> {
            match dd.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(v) => serde_json::from_value(v.clone())
                    .map_err(|e| Error::InvalidConfig(format!("audio_vae ddconfig.{key}: {e}"))),
            }
        };
        let norm_type = match dd
            .get("norm_type")
            .and_then(Value::as_str)
            .unwrap_or("pixel")
        {
            "pixel" => NormType::Pixel,
            "group" => NormType::Group,
            other => return Err(unsupported("audio_vae.norm_type", other, "pixel or group")),
        };
        let causality_axis = match dd.get("causality_axis") {
            None => CausalityAxis::Height,
            Some(Value::Null) => CausalityAxis::None,
            Some(v) => match v.as_str() {
                Some("height") => CausalityAxis::Height,
                Some("width") => CausalityAxis::Width,
                Some("width-compatibility") => CausalityAxis::WidthCompatibility,
                _ => {
                    return Err(unsupported(
                        "audio_vae.causality_axis",
                        v,
                        "height, width, width-compatibility or null",
                    ))
                }
            },
        };
        let mel_bins = [
            dd.get("mel_bins"),
            get(&root, &["preprocessing", "mel", "n_mel_channels"]),
            get(&root, &["variables", "mel_bins"]),
        ]
        .into_iter()
        .flatten()
        .find_map(|v| v.as_u64().filter(|&x| x > 0).map(|x| x as usize));
        let cfg = Self {
            ch: int(dd.get("ch"), "ch", 128)?,
            out_ch: int(dd.get("out_ch"), "out_ch", 2)?,
            ch_mult: list("ch_mult", vec![1, 2, 4])?,
            num_res_blocks: int(dd.get("num_res_blocks"), "num_res_blocks", 2)?,
            attn_resolutions: list("attn_resolutions", vec![8, 16, 32])?,
            resolution: int(dd.get("resolution"), "resolution", 256)?,
            z_channels: int(dd.get("z_channels"), "z_channels", 8)?,
            double_z: boolean("double_z", true),
            in_channels: int(dd.get("in_channels"), "in_channels", 2)?,
            norm_type,
            causality_axis,
            mid_block_add_attention: boolean("mid_block_add_attention", true),
            resamp_with_conv: boolean("resamp_with_conv", true),
            sample_rate: int(
                get(&root, &["model", "params", "sampling_rate"]),
                "sampling_rate",
                16000,
            )?,
            mel_hop_length: int(
                get(&root, &["preprocessing", "stft", "hop_length"]),
                "hop_length",
                160,
            )?,
            n_fft: int(
                get(&root, &["preprocessing", "stft", "filter_length"]),
                "filter_length",
                1024,
            )?,
            is_causal: get(&root, &["preprocessing", "stft", "causal"])
                .and_then(Value::as_bool)
                .unwrap_or(true),
            mel_bins,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        if self.ch_mult.is_empty() || self.ch == 0 || self.z_channels == 0 {
            return Err(Error::InvalidConfig(
                "audio_vae: ch, ch_mult and z_channels must be non-empty".into(),
            ));
        }
        if self.causality_axis != CausalityAxis::None && self.norm_type == NormType::Group {
            return Err(unsupported(
                "audio_vae.norm_type",
                "group",
                "pixel with a causal axis",
            ));
        }
        if self.causality_axis != CausalityAxis::None && !self.resamp_with_conv {
            return Err(unsupported(
                "audio_vae.resamp_with_conv",
                false,
                "true with a causal axis",
            ));
        }
        Ok(())
    }
}

fn filter(name: &'static str, part: &str) -> SDOps {
    SDOps::new(name)
        .with_matching(&format!("audio_vae.{part}."), "")
        .with_replacement(&format!("audio_vae.{part}."), "")
        .with_matching("audio_vae.per_channel_statistics.", "")
        .with_replacement(
            "audio_vae.per_channel_statistics.",
            "per_channel_statistics.",
        )
}

/// `audio_vae.encoder.*` (+ the shared statistics) -> encoder keys.
pub fn audio_vae_encoder_keys_filter() -> SDOps {
    filter("AUDIO_VAE_ENCODER_KEYS_FILTER", "encoder")
}

/// `audio_vae.decoder.*` (+ the shared statistics) -> decoder keys.
pub fn audio_vae_decoder_keys_filter() -> SDOps {
    filter("AUDIO_VAE_DECODER_KEYS_FILTER", "decoder")
}

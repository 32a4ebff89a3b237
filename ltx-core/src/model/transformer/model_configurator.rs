//! Port of `ltx_core/model/transformer/model_configurator.py`: the transformer's config, read from
//! the checkpoint's `config` metadata (`{"transformer": {...}}`), with the reference
//! configurator's defaults and checks.

use serde::Deserialize;
use serde_json::Value;

use super::rope::RopeType;
use crate::error::{unsupported, Error, Result};
use crate::loader::SDOps;

/// Which streams a model has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LtxModelType {
    AudioVideo,
    VideoOnly,
    AudioOnly,
}

impl LtxModelType {
    pub fn is_video_enabled(self) -> bool {
        matches!(self, Self::AudioVideo | Self::VideoOnly)
    }

    pub fn is_audio_enabled(self) -> bool {
        matches!(self, Self::AudioVideo | Self::AudioOnly)
    }
}

fn d_heads() -> usize {
    32
}
fn d_head_dim() -> usize {
    128
}
fn d_channels() -> usize {
    128
}
fn d_layers() -> usize {
    48
}
fn d_cross_dim() -> usize {
    4096
}
fn d_eps() -> f64 {
    1e-6
}
fn d_theta() -> f64 {
    10000.0
}
fn d_max_pos() -> Vec<usize> {
    vec![20, 2048, 2048]
}
fn d_ts_mult() -> f64 {
    1000.0
}
fn d_true() -> bool {
    true
}
fn d_audio_head_dim() -> usize {
    64
}
fn d_audio_cross_dim() -> usize {
    2048
}
fn d_audio_max_pos() -> Vec<usize> {
    vec![20]
}
fn d_av_mult() -> f64 {
    1.0
}
fn d_attention_type() -> String {
    "default".into()
}

/// The `transformer` section of a checkpoint config. Defaults are the reference configurator's
/// (which differ from the released metadata for `rope_type` and
/// `av_ca_timestep_scale_multiplier`: always read the header).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct LtxModelConfig {
    #[serde(default = "d_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "d_head_dim")]
    pub attention_head_dim: usize,
    #[serde(default = "d_channels")]
    pub in_channels: usize,
    #[serde(default = "d_channels")]
    pub out_channels: usize,
    #[serde(default = "d_layers")]
    pub num_layers: usize,
    #[serde(default = "d_cross_dim")]
    pub cross_attention_dim: usize,
    #[serde(default = "d_eps")]
    pub norm_eps: f64,
    #[serde(default = "d_attention_type")]
    pub attention_type: String,
    #[serde(default = "d_theta")]
    pub positional_embedding_theta: f64,
    #[serde(default = "d_max_pos")]
    pub positional_embedding_max_pos: Vec<usize>,
    #[serde(default = "d_ts_mult")]
    pub timestep_scale_multiplier: f64,
    #[serde(default = "d_true")]
    pub use_middle_indices_grid: bool,
    #[serde(default = "d_heads")]
    pub audio_num_attention_heads: usize,
    #[serde(default = "d_audio_head_dim")]
    pub audio_attention_head_dim: usize,
    #[serde(default = "d_channels")]
    pub audio_in_channels: usize,
    #[serde(default = "d_channels")]
    pub audio_out_channels: usize,
    #[serde(default = "d_audio_cross_dim")]
    pub audio_cross_attention_dim: usize,
    #[serde(default = "d_audio_max_pos")]
    pub audio_positional_embedding_max_pos: Vec<usize>,
    #[serde(default = "d_av_mult")]
    pub av_ca_timestep_scale_multiplier: f64,
    #[serde(default)]
    pub rope_type: RopeType,
    /// `"float64"` selects the float64 frequency grid; anything else the float32 one.
    #[serde(default)]
    pub frequencies_precision: Option<Value>,
    #[serde(default)]
    pub apply_gated_attention: bool,
    #[serde(default)]
    pub cross_attention_adaln: bool,
    /// 2.3: the caption projection lives in the text encoder's connector, not here.
    #[serde(default)]
    pub caption_proj_before_connector: bool,
    /// Input width of the 19B caption projections (required when they are in the transformer).
    #[serde(default)]
    pub caption_channels: Option<usize>,
    /// With the cross-attention AdaLN: whether the text K/V modulation has a timestep-driven MLP
    /// (`prompt_adaln_single`) on top of the per-block table. `false` makes the modulated context,
    /// and so the text K/V, independent of the step (KV-cacheable checkpoints).
    #[serde(default = "d_true")]
    pub use_prompt_adaln_single: bool,
    /// Biases of the video feed-forward's two linears (`false` in LTX-2.5).
    #[serde(default = "d_true")]
    pub ff_bias: bool,
    /// Biases of the audio feed-forward's two linears.
    #[serde(default = "d_true")]
    pub audio_ff_bias: bool,
    /// A learned `[1, D]` vector added after `patchify_proj` to the video tokens the
    /// `keyframes_mask` marks (the first latent frame, generated keyframe slots; LTX-2.5).
    #[serde(default)]
    pub use_keyframes_abs_pos_embedding: bool,
}

/// Keys the reference asserts on, with the only value it accepts (compared as JSON numbers,
/// strings, booleans; `null` means the key must be absent or null).
const REQUIRED_VALUES: &[(&str, &str)] = &[
    ("dropout", "0.0"),
    ("attention_bias", "true"),
    ("num_vector_embeds", "null"),
    ("activation_fn", "\"gelu-approximate\""),
    ("num_embeds_ada_norm", "1000"),
    ("use_linear_projection", "false"),
    ("only_cross_attention", "false"),
    ("cross_attention_norm", "true"),
    ("double_self_attention", "false"),
    ("upcast_attention", "false"),
    ("standardization_norm", "\"rms_norm\""),
    ("norm_elementwise_affine", "false"),
    ("qk_norm", "\"rms_norm\""),
    ("positional_embedding_type", "\"rope\""),
    ("use_middle_indices_grid", "true"),
];

/// Extra checks of the audio-video configurator.
const REQUIRED_AV_VALUES: &[(&str, &str)] = &[
    ("use_audio_video_cross_attention", "true"),
    ("share_ff", "false"),
    ("av_cross_ada_norm", "true"),
];

fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

impl LtxModelConfig {
    /// Reads `config["transformer"]` and applies the checks of the configurator for `model_type`.
    pub fn from_checkpoint_config(config: &Value, model_type: LtxModelType) -> Result<Self> {
        let section = config.get("transformer").cloned().unwrap_or(Value::Null);
        let section = match section {
            Value::Null => Value::Object(Default::default()),
            v @ Value::Object(_) => v,
            other => {
                return Err(Error::InvalidConfig(format!(
                    "`transformer` config must be an object, got {other}"
                )))
            }
        };
        let mut checks: Vec<(&str, &str)> = REQUIRED_VALUES.to_vec();
        if model_type == LtxModelType::AudioVideo {
            checks.extend_from_slice(REQUIRED_AV_VALUES);
        }
        for (key, want) in checks {
            let want: Value = serde_json::from_str(want).expect("valid literal");
            let found = section.get(key).cloned().unwrap_or(Value::Null);
            if !json_equal(&found, &want) {
                return Err(unsupported(
                    &format!("transformer.{key}"),
                    found,
                    &want.to_string(),
                ));
            }
        }
        if model_type == LtxModelType::AudioVideo {
            // 1.2.0's audio-video configurator requires the two head counts, present and equal
            let heads = section.get("num_attention_heads").cloned();
            let audio_heads = section.get("audio_num_attention_heads").cloned();
            let equal = matches!((&heads, &audio_heads), (Some(a), Some(b)) if json_equal(a, b));
            if !equal {
                return Err(unsupported(
                    "transformer.num_attention_heads",
                    heads.unwrap_or(Value::Null),
                    &format!(
                        "the same count as audio_num_attention_heads ({})",
                        audio_heads.unwrap_or(Value::Null)
                    ),
                ));
            }
        }
        let mut cfg: Self = serde_json::from_value(section)
            .map_err(|e| Error::InvalidConfig(format!("transformer config: {e}")))?;
        match model_type {
            // the reference's audio-only configurator passes none of these on: its model keeps
            // the constructor defaults whatever the file says
            LtxModelType::AudioOnly => {
                cfg.use_prompt_adaln_single = true;
                cfg.ff_bias = true;
                cfg.audio_ff_bias = true;
                cfg.use_keyframes_abs_pos_embedding = false;
            }
            // nor does the video-only one pass the audio feed-forward's bias
            LtxModelType::VideoOnly => cfg.audio_ff_bias = true,
            LtxModelType::AudioVideo => {}
        }
        cfg.validate(model_type)?;
        Ok(cfg)
    }

    /// Structural checks a config must pass before any weight is read.
    pub fn validate(&self, model_type: LtxModelType) -> Result<()> {
        match self.attention_type.as_str() {
            "default" | "pytorch" | "xformers" | "flash_attention_3" => {}
            other => {
                return Err(unsupported(
                    "transformer.attention_type",
                    other,
                    "default, pytorch, xformers or flash_attention_3",
                ))
            }
        }
        if model_type.is_video_enabled() {
            if self.positional_embedding_max_pos.len() != 3 {
                return Err(unsupported(
                    "transformer.positional_embedding_max_pos",
                    format!("{:?}", self.positional_embedding_max_pos),
                    "three entries (time, height, width)",
                ));
            }
            if self.num_attention_heads == 0 || self.attention_head_dim == 0 {
                return Err(Error::InvalidConfig(
                    "video attention heads must be non-empty".into(),
                ));
            }
        }
        if model_type.is_audio_enabled() {
            if self.audio_positional_embedding_max_pos.is_empty() {
                return Err(unsupported(
                    "transformer.audio_positional_embedding_max_pos",
                    "[]",
                    "one entry (time)",
                ));
            }
            if self.audio_num_attention_heads == 0 || self.audio_attention_head_dim == 0 {
                return Err(Error::InvalidConfig(
                    "audio attention heads must be non-empty".into(),
                ));
            }
        }
        if self.has_caption_projection() && self.caption_channels.is_none() {
            return Err(Error::InvalidConfig(
                "transformer.caption_channels is required when the caption projection is in the \
                 transformer (caption_proj_before_connector false)"
                    .into(),
            ));
        }
        if self.positional_embedding_max_pos.contains(&0)
            || self.audio_positional_embedding_max_pos.contains(&0)
        {
            return Err(Error::InvalidConfig(
                "positional max_pos entries must be positive".into(),
            ));
        }
        Ok(())
    }

    /// 19B: the caption projections are part of the transformer.
    pub fn has_caption_projection(&self) -> bool {
        !self.caption_proj_before_connector
    }

    pub fn double_precision_rope(&self) -> bool {
        self.frequencies_precision.as_ref().and_then(Value::as_str) == Some("float64")
    }

    pub fn inner_dim(&self) -> usize {
        self.num_attention_heads * self.attention_head_dim
    }

    pub fn audio_inner_dim(&self) -> usize {
        self.audio_num_attention_heads * self.audio_attention_head_dim
    }

    /// Whether the model has the timestep-driven prompt AdaLN (`prompt_adaln_single`).
    pub fn has_prompt_adaln(&self) -> bool {
        self.cross_attention_adaln && self.use_prompt_adaln_single
    }

    /// Whether the text cross-attention's modulated context, and so its K/V projections, do
    /// not depend on the step: no cross-attention AdaLN, or one without the prompt MLP.
    pub fn text_kv_step_invariant(&self) -> bool {
        !self.has_prompt_adaln()
    }

    /// AdaLN coefficients per block: 6, or 9 with the cross-attention AdaLN (2.3).
    pub fn adaln_coefficient(&self) -> usize {
        if self.cross_attention_adaln {
            9
        } else {
            6
        }
    }
}

/// ComfyUI checkpoints prefix the transformer keys with `model.diffusion_model.`.
pub fn ltxv_model_comfy_renaming_map() -> SDOps {
    SDOps::new("LTXV_MODEL_COMFY_PREFIX_MAP")
        .with_matching("model.diffusion_model.", "")
        .with_replacement("model.diffusion_model.", "")
}

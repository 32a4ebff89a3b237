//! Port of `ltx_core/text_encoders/gemma/config.py`: the Gemma-3 12B text config the reference
//! hard-codes (`GEMMA3_CONFIG_FOR_LTX.text_config`), as defaults that a `config.json` may override.

use serde::Deserialize;
use serde_json::Value;

use crate::error::{unsupported, Error, Result};

fn d_vocab() -> usize {
    262_208
}
fn d_hidden() -> usize {
    3840
}
fn d_intermediate() -> usize {
    15_360
}
fn d_layers() -> usize {
    48
}
fn d_heads() -> usize {
    16
}
fn d_kv_heads() -> usize {
    8
}
fn d_head_dim() -> usize {
    256
}
fn d_pre_attn() -> f64 {
    256.0
}
fn d_eps() -> f64 {
    1e-6
}
fn d_rope_local() -> f64 {
    10_000.0
}
fn d_rope_theta() -> f64 {
    1_000_000.0
}
fn d_window() -> usize {
    1024
}
fn d_pattern() -> usize {
    6
}
fn d_act() -> String {
    "gelu_pytorch_tanh".into()
}
fn d_scaling() -> Option<RopeScaling> {
    Some(RopeScaling {
        rope_type: "linear".into(),
        factor: 8.0,
    })
}

/// RoPE scaling of the global (full-attention) layers.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct RopeScaling {
    pub rope_type: String,
    pub factor: f64,
}

/// Gemma-3 text decoder settings (defaults: the 12B model LTX-2 uses).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Gemma3TextConfig {
    #[serde(default = "d_vocab")]
    pub vocab_size: usize,
    #[serde(default = "d_hidden")]
    pub hidden_size: usize,
    #[serde(default = "d_intermediate")]
    pub intermediate_size: usize,
    #[serde(default = "d_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "d_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "d_kv_heads")]
    pub num_key_value_heads: usize,
    #[serde(default = "d_head_dim")]
    pub head_dim: usize,
    /// Attention scores are scaled by `query_pre_attn_scalar^-1/2`.
    #[serde(default = "d_pre_attn")]
    pub query_pre_attn_scalar: f64,
    #[serde(default = "d_eps")]
    pub rms_norm_eps: f64,
    /// RoPE base of the sliding-window layers.
    #[serde(default = "d_rope_local")]
    pub rope_local_base_freq: f64,
    /// RoPE base of the global layers.
    #[serde(default = "d_rope_theta")]
    pub rope_theta: f64,
    #[serde(default = "d_scaling")]
    pub rope_scaling: Option<RopeScaling>,
    #[serde(default = "d_window")]
    pub sliding_window: usize,
    /// Every `n`-th layer is global (used when `layer_types` is absent).
    #[serde(default = "d_pattern")]
    pub sliding_window_pattern: usize,
    /// `"sliding_attention"` / `"full_attention"` per layer (overrides the pattern).
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
    #[serde(default)]
    pub attn_logit_softcapping: Option<f64>,
    /// `tanh` cap of the language-model logits (generation only).
    #[serde(default)]
    pub final_logit_softcapping: Option<f64>,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default = "d_act")]
    pub hidden_activation: String,
}

impl Default for Gemma3TextConfig {
    fn default() -> Self {
        serde_json::from_value(Value::Object(Default::default())).expect("defaults")
    }
}

impl Gemma3TextConfig {
    /// From a Hugging Face `config.json` (its `text_config` section when present) or a flat dict.
    pub fn from_json(v: &Value) -> Result<Self> {
        let section = v.get("text_config").unwrap_or(v);
        let cfg: Self = serde_json::from_value(section.clone())
            .map_err(|e| Error::InvalidConfig(format!("Gemma-3 text config: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        if self.num_attention_heads == 0
            || self.num_key_value_heads == 0
            || self.num_attention_heads % self.num_key_value_heads != 0
        {
            return Err(unsupported(
                "num_key_value_heads",
                self.num_key_value_heads,
                "a divisor of num_attention_heads",
            ));
        }
        if self.head_dim % 2 != 0 {
            return Err(unsupported("head_dim", self.head_dim, "an even number"));
        }
        if self.hidden_activation != "gelu_pytorch_tanh" && self.hidden_activation != "gelu_tanh" {
            return Err(unsupported(
                "hidden_activation",
                &self.hidden_activation,
                "gelu_pytorch_tanh",
            ));
        }
        if let Some(s) = &self.rope_scaling {
            if s.rope_type != "linear" && s.rope_type != "default" {
                return Err(unsupported(
                    "rope_scaling.rope_type",
                    &s.rope_type,
                    "linear",
                ));
            }
        }
        for (i, t) in self.layer_types().iter().enumerate() {
            if !matches!(t.as_str(), "sliding_attention" | "full_attention") {
                return Err(unsupported(
                    &format!("layer_types[{i}]"),
                    t,
                    "sliding_attention or full_attention",
                ));
            }
        }
        if let Some(types) = &self.layer_types {
            if types.len() != self.num_hidden_layers {
                return Err(Error::InvalidConfig(format!(
                    "{} layer types for {} layers",
                    types.len(),
                    self.num_hidden_layers
                )));
            }
        }
        Ok(())
    }

    /// Each layer's attention type: `layer_types`, else every `sliding_window_pattern`-th layer is
    /// global (transformers' rule).
    pub fn layer_types(&self) -> Vec<String> {
        match &self.layer_types {
            Some(t) => t.clone(),
            None => (0..self.num_hidden_layers)
                .map(|i| {
                    if self.sliding_window_pattern > 0 && (i + 1) % self.sliding_window_pattern == 0
                    {
                        "full_attention".to_string()
                    } else {
                        "sliding_attention".to_string()
                    }
                })
                .collect(),
        }
    }
}

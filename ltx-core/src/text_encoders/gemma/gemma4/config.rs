//! The Gemma-4 unified text config (transformers 5.x `Gemma4UnifiedTextConfig`) as ltx-core 1.2.0
//! reads it: from a text encoder's `gemma_config` header (top level with `text_config`) through
//! `build_gemma_hf_config`. Defaults are transformers' class defaults; settings the port does not
//! implement are typed errors.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{unsupported, Error, Result};

/// The only top-level `model_type` this text model reads.
pub const GEMMA4_UNIFIED_MODEL_TYPE: &str = "gemma4_unified";
/// transformers: one layer in six is global when `layer_types` is absent.
const SLIDING_WINDOW_PATTERN: usize = 6;

fn d_vocab() -> usize {
    262_144
}
fn d_hidden() -> usize {
    2304
}
fn d_intermediate() -> usize {
    9216
}
fn d_layers() -> usize {
    30
}
fn d_heads() -> usize {
    8
}
fn d_kv_heads() -> usize {
    4
}
fn d_head_dim() -> usize {
    256
}
fn d_global_head_dim() -> usize {
    512
}
fn d_eps() -> f64 {
    1e-6
}
fn d_window() -> usize {
    1024
}
fn d_act() -> String {
    "gelu_pytorch_tanh".into()
}
fn d_pad() -> Option<u32> {
    Some(0)
}
fn d_bidirectional() -> Option<String> {
    Some("vision".into())
}
fn d_factor() -> f64 {
    1.0
}
fn d_rope() -> HashMap<String, Option<RopeParameters>> {
    let rope = |rope_type: &str, rope_theta, partial_rotary_factor| {
        Some(RopeParameters {
            rope_type: rope_type.into(),
            rope_theta,
            partial_rotary_factor,
            factor: 1.0,
        })
    };
    HashMap::from([
        ("sliding_attention".into(), rope("default", 10_000.0, None)),
        (
            "full_attention".into(),
            rope("proportional", 1_000_000.0, Some(0.25)),
        ),
    ])
}

/// The attention kind of one decoder layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gemma4LayerType {
    /// Causal, keys limited to the last `sliding_window` positions; `head_dim` heads.
    SlidingAttention,
    /// Causal over the whole sequence; `global_head_dim` heads.
    FullAttention,
}

impl Gemma4LayerType {
    fn parse(key: &str, name: &str) -> Result<Self> {
        match name {
            "sliding_attention" => Ok(Self::SlidingAttention),
            "full_attention" => Ok(Self::FullAttention),
            other => Err(unsupported(
                key,
                other,
                "sliding_attention or full_attention",
            )),
        }
    }

    /// The key of this layer type in `rope_parameters`.
    pub fn name(self) -> &'static str {
        match self {
            Self::SlidingAttention => "sliding_attention",
            Self::FullAttention => "full_attention",
        }
    }
}

/// One entry of `rope_parameters`, as stored.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct RopeParameters {
    pub rope_type: String,
    pub rope_theta: f64,
    /// `proportional` only: the share of each head's frequency pairs that rotate.
    #[serde(default)]
    pub partial_rotary_factor: Option<f64>,
    /// `proportional` only: every frequency is divided by it.
    #[serde(default = "d_factor")]
    pub factor: f64,
}

/// The rotary frequencies of one layer type, checked against its head size: `head_dim / 2`
/// inverse frequencies, `1 / θ^(2i / head_dim) / factor` for the first `rotated` pairs and 0 (no
/// rotation) for the rest.
#[derive(Clone, Debug, PartialEq)]
pub struct Gemma4Rope {
    pub theta: f64,
    pub rotated: usize,
    pub factor: f64,
    pub head_dim: usize,
}

impl Gemma4Rope {
    /// transformers' `compute_default_rope_parameters` (always the config's `head_dim`) or
    /// `_compute_proportional_rope_parameters` (`global_head_dim` for full-attention layers).
    fn new(cfg: &Gemma4TextConfig, kind: Gemma4LayerType, head_dim: usize) -> Result<Self> {
        let key = format!("rope_parameters.{}", kind.name());
        let p = cfg
            .rope_parameters
            .get(kind.name())
            .and_then(Option::as_ref)
            .ok_or_else(|| {
                unsupported(&key, "absent", "rope parameters for each layer type used")
            })?;
        let (rope_dim, rotated, factor) = match p.rope_type.as_str() {
            "default" => (cfg.head_dim, cfg.head_dim / 2, 1.0),
            "proportional" => {
                let dim = match kind {
                    Gemma4LayerType::FullAttention => cfg.global_head_dim,
                    Gemma4LayerType::SlidingAttention => cfg.head_dim,
                };
                let share = p.partial_rotary_factor.unwrap_or(1.0);
                if !(0.0..=1.0).contains(&share) {
                    return Err(unsupported(
                        &format!("{key}.partial_rotary_factor"),
                        share,
                        "a value in [0, 1]",
                    ));
                }
                // python's `int(share * dim // 2)`
                (dim, (share * dim as f64 / 2.0).floor() as usize, p.factor)
            }
            other => {
                return Err(unsupported(
                    &format!("{key}.rope_type"),
                    other,
                    "default or proportional",
                ))
            }
        };
        if rope_dim != head_dim {
            return Err(unsupported(
                &format!("{key}.rope_type"),
                &p.rope_type,
                &format!(
                    "frequencies for the layer's {head_dim}-wide heads (these are {rope_dim})"
                ),
            ));
        }
        Ok(Self {
            theta: p.rope_theta,
            rotated,
            factor,
            head_dim,
        })
    }

    /// The `head_dim / 2` inverse frequencies in f32, as the reference computes them.
    pub fn inv_freq(&self) -> Vec<f32> {
        let d = self.head_dim;
        (0..d / 2)
            .map(|i| {
                if i >= self.rotated {
                    return 0.0;
                }
                let e = (2 * i) as f32 / d as f32;
                (1.0f32 / (self.theta as f32).powf(e)) / self.factor as f32
            })
            .collect()
    }
}

/// Gemma-4 unified text decoder settings (`text_config`), plus the top-level multimodal
/// placeholder ids the text path replaces by padding.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Gemma4TextConfig {
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
    /// Key/value heads of the sliding layers (and of full layers without `attention_k_eq_v`).
    #[serde(default = "d_kv_heads")]
    pub num_key_value_heads: usize,
    #[serde(default = "d_head_dim")]
    pub head_dim: usize,
    /// Head size of the full-attention layers (0: `head_dim`).
    #[serde(default = "d_global_head_dim")]
    pub global_head_dim: usize,
    /// Key/value heads of full layers with `attention_k_eq_v`.
    #[serde(default)]
    pub num_global_key_value_heads: Option<usize>,
    /// Full layers have no `v_proj`: the values are the keys' projection (before `k_norm`).
    #[serde(default)]
    pub attention_k_eq_v: bool,
    #[serde(default = "d_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "d_window")]
    pub sliding_window: usize,
    /// `"sliding_attention"` / `"full_attention"` per layer; absent: every sixth is full.
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
    /// Per layer type (`sliding_attention`, `full_attention`).
    #[serde(default = "d_rope")]
    pub rope_parameters: HashMap<String, Option<RopeParameters>>,
    /// `tanh` cap of the language-model logits (generation only).
    #[serde(default)]
    pub final_logit_softcapping: Option<f64>,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default = "d_act")]
    pub hidden_activation: String,
    #[serde(default = "d_pad")]
    pub pad_token_id: Option<u32>,
    /// `"vision"`: image tokens attend bidirectionally, text causally (text-only input: causal).
    #[serde(default = "d_bidirectional")]
    pub use_bidirectional_attention: Option<String>,
    #[serde(default)]
    pub num_kv_shared_layers: usize,
    #[serde(default)]
    pub use_double_wide_mlp: bool,
    #[serde(default)]
    pub enable_moe_block: bool,
    #[serde(default)]
    pub hidden_size_per_layer_input: usize,
    /// Top-level `image_token_id`, `video_token_id`, `audio_token_id`: embedded as `pad_token_id`.
    #[serde(skip)]
    pub placeholder_token_ids: Vec<u32>,
}

/// The top-level keys of `gemma_config` the text path reads.
#[derive(Deserialize)]
struct TopLevel {
    model_type: Option<String>,
    text_config: Option<Value>,
    #[serde(default = "d_image")]
    image_token_id: Option<u32>,
    #[serde(default = "d_video")]
    video_token_id: Option<u32>,
    #[serde(default = "d_audio")]
    audio_token_id: Option<u32>,
}
fn d_image() -> Option<u32> {
    Some(258_880)
}
fn d_video() -> Option<u32> {
    Some(258_884)
}
fn d_audio() -> Option<u32> {
    Some(258_881)
}

impl Gemma4TextConfig {
    /// From a `gemma_config` header value (top level `model_type gemma4_unified` with
    /// `text_config`).
    pub fn from_gemma_config(v: &Value) -> Result<Self> {
        let top: TopLevel = serde_json::from_value(v.clone())
            .map_err(|e| Error::InvalidConfig(format!("Gemma-4 config: {e}")))?;
        let model_type = top.model_type.as_deref().unwrap_or("absent");
        if model_type != GEMMA4_UNIFIED_MODEL_TYPE {
            return Err(unsupported(
                "model_type",
                model_type,
                GEMMA4_UNIFIED_MODEL_TYPE,
            ));
        }
        let text = top
            .text_config
            .ok_or_else(|| Error::InvalidConfig("Gemma-4 config: no `text_config`".into()))?;
        if let Some(t) = text.get("model_type").and_then(Value::as_str) {
            if t != "gemma4_unified_text" {
                return Err(unsupported(
                    "text_config.model_type",
                    t,
                    "gemma4_unified_text",
                ));
            }
        }
        let mut cfg: Self = serde_json::from_value(text)
            .map_err(|e| Error::InvalidConfig(format!("Gemma-4 text config: {e}")))?;
        cfg.placeholder_token_ids = [top.image_token_id, top.video_token_id, top.audio_token_id]
            .into_iter()
            .flatten()
            .collect();
        cfg.validate()?;
        Ok(cfg)
    }

    /// The reference's asserts (or the crashes it would hit), and what the port leaves out.
    pub fn validate(&self) -> Result<()> {
        if self.enable_moe_block {
            return Err(unsupported("enable_moe_block", true, "false"));
        }
        if self.num_kv_shared_layers > 0 {
            return Err(unsupported(
                "num_kv_shared_layers",
                self.num_kv_shared_layers,
                "0 (shared key/value layers are not implemented)",
            ));
        }
        if self.hidden_size_per_layer_input > 0 {
            return Err(unsupported(
                "hidden_size_per_layer_input",
                self.hidden_size_per_layer_input,
                "0 (per-layer input embeddings are not implemented)",
            ));
        }
        match self.use_bidirectional_attention.as_deref() {
            None | Some("vision") => {}
            Some(other) => {
                return Err(unsupported(
                    "use_bidirectional_attention",
                    other,
                    "\"vision\" or null (causal text attention)",
                ))
            }
        }
        if !matches!(
            self.hidden_activation.as_str(),
            "gelu_pytorch_tanh" | "gelu_tanh"
        ) {
            return Err(unsupported(
                "hidden_activation",
                &self.hidden_activation,
                "gelu_pytorch_tanh",
            ));
        }
        if self.pad_token_id.is_none() {
            return Err(unsupported("pad_token_id", "null", "a token id"));
        }
        if self.num_hidden_layers == 0 {
            return Err(unsupported("num_hidden_layers", 0, "at least 1"));
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
        let kinds = self.layer_kinds()?;
        for kind in [
            Gemma4LayerType::SlidingAttention,
            Gemma4LayerType::FullAttention,
        ] {
            if kinds.contains(&kind) {
                let (heads, kv, dim) = self.attention_shape(kind)?;
                if kv == 0 || heads % kv != 0 {
                    let key = if self.uses_k_eq_v(kind) {
                        "num_global_key_value_heads"
                    } else {
                        "num_key_value_heads"
                    };
                    return Err(unsupported(key, kv, "a divisor of num_attention_heads"));
                }
                if dim == 0 || dim % 2 != 0 {
                    return Err(unsupported("head_dim", dim, "an even number"));
                }
                Gemma4Rope::new(self, kind, dim)?;
            }
        }
        Ok(())
    }

    /// Each layer's attention kind. transformers forces the last layer to full attention (with a
    /// warning), and so does this.
    pub fn layer_kinds(&self) -> Result<Vec<Gemma4LayerType>> {
        let mut kinds = match &self.layer_types {
            Some(types) => types
                .iter()
                .enumerate()
                .map(|(i, t)| Gemma4LayerType::parse(&format!("layer_types[{i}]"), t))
                .collect::<Result<Vec<_>>>()?,
            None => (0..self.num_hidden_layers)
                .map(|i| {
                    if (i + 1) % SLIDING_WINDOW_PATTERN == 0 {
                        Gemma4LayerType::FullAttention
                    } else {
                        Gemma4LayerType::SlidingAttention
                    }
                })
                .collect(),
        };
        if let Some(last) = kinds.last_mut() {
            *last = Gemma4LayerType::FullAttention;
        }
        Ok(kinds)
    }

    /// Whether layers of `kind` take their values from `k_proj`.
    pub fn uses_k_eq_v(&self, kind: Gemma4LayerType) -> bool {
        self.attention_k_eq_v && kind == Gemma4LayerType::FullAttention
    }

    /// `(query heads, key/value heads, head size)` of a layer of `kind`.
    pub fn attention_shape(&self, kind: Gemma4LayerType) -> Result<(usize, usize, usize)> {
        let full = kind == Gemma4LayerType::FullAttention;
        let dim = if full && self.global_head_dim > 0 {
            self.global_head_dim
        } else {
            self.head_dim
        };
        let kv = if self.uses_k_eq_v(kind) {
            self.num_global_key_value_heads.ok_or_else(|| {
                unsupported(
                    "num_global_key_value_heads",
                    "null",
                    "a head count when attention_k_eq_v is true",
                )
            })?
        } else {
            self.num_key_value_heads
        };
        Ok((self.num_attention_heads, kv, dim))
    }

    /// The rotary frequencies of layers of `kind`.
    pub fn rope(&self, kind: Gemma4LayerType) -> Result<Gemma4Rope> {
        let (_, _, dim) = self.attention_shape(kind)?;
        Gemma4Rope::new(self, kind, dim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn released() -> Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/reference/released_ltx25/gemma4-12b-with-proj-ltx-2.5-bf16.metadata.json"
        );
        let header: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let cfg = header["__metadata__"]["gemma_config"].as_str().unwrap();
        serde_json::from_str(cfg).unwrap()
    }

    fn with_text(key: &str, value: Value) -> Result<Gemma4TextConfig> {
        let mut v = released();
        v["text_config"][key] = value;
        Gemma4TextConfig::from_gemma_config(&v)
    }

    fn unsupported_key(r: Result<Gemma4TextConfig>) -> String {
        match r {
            Err(Error::UnsupportedConfig { key, .. }) => key,
            other => panic!("expected an unsupported-config error, got {other:?}"),
        }
    }

    #[test]
    fn released_config_parses() {
        let cfg = Gemma4TextConfig::from_gemma_config(&released()).unwrap();
        assert_eq!((cfg.hidden_size, cfg.num_hidden_layers), (3840, 48));
        let kinds = cfg.layer_kinds().unwrap();
        let full: Vec<usize> = (0..48)
            .filter(|&i| kinds[i] == Gemma4LayerType::FullAttention)
            .collect();
        assert_eq!(full, [5, 11, 17, 23, 29, 35, 41, 47]);
        let rope = cfg.rope(Gemma4LayerType::FullAttention).unwrap();
        assert_eq!((rope.head_dim, rope.rotated), (512, 64));
        let inv = rope.inv_freq();
        assert_eq!(inv.len(), 256);
        assert!(inv[63] > 0.0 && inv[64..].iter().all(|&f| f == 0.0));
        let sliding = cfg.rope(Gemma4LayerType::SlidingAttention).unwrap();
        assert_eq!((sliding.head_dim, sliding.rotated), (256, 128));
        assert_eq!(
            cfg.attention_shape(Gemma4LayerType::FullAttention).unwrap(),
            (16, 1, 512)
        );
        assert_eq!(cfg.placeholder_token_ids, [258_880, 258_884, 258_881]);
    }

    #[test]
    fn unsupported_settings_are_typed_errors() {
        let cases = [
            ("enable_moe_block", json!(true), "enable_moe_block"),
            ("num_kv_shared_layers", json!(2), "num_kv_shared_layers"),
            (
                "hidden_size_per_layer_input",
                json!(256),
                "hidden_size_per_layer_input",
            ),
            (
                "use_bidirectional_attention",
                json!("all"),
                "use_bidirectional_attention",
            ),
            ("hidden_activation", json!("relu"), "hidden_activation"),
            (
                "num_global_key_value_heads",
                json!(3),
                "num_global_key_value_heads",
            ),
            (
                "num_global_key_value_heads",
                Value::Null,
                "num_global_key_value_heads",
            ),
        ];
        for (key, value, want) in cases {
            assert_eq!(unsupported_key(with_text(key, value)), want, "{key}");
        }
        let mut types = vec![json!("sliding_attention"); 48];
        types[3] = json!("chunked_attention");
        assert_eq!(
            unsupported_key(with_text("layer_types", Value::Array(types))),
            "layer_types[3]"
        );
        let mut rope = released()["text_config"]["rope_parameters"].clone();
        rope["full_attention"]["rope_type"] = json!("yarn");
        assert_eq!(
            unsupported_key(with_text("rope_parameters", rope.clone())),
            "rope_parameters.full_attention.rope_type"
        );
        // `default` RoPE sizes its frequencies by `head_dim`, not the full layers' 512
        rope["full_attention"]["rope_type"] = json!("default");
        assert_eq!(
            unsupported_key(with_text("rope_parameters", rope)),
            "rope_parameters.full_attention.rope_type"
        );
        let mut v = released();
        v["model_type"] = json!("gemma3");
        assert_eq!(
            unsupported_key(Gemma4TextConfig::from_gemma_config(&v)),
            "model_type"
        );
    }

    #[test]
    fn wrong_layer_count_and_missing_text_config_are_invalid() {
        let r = with_text("layer_types", json!(["full_attention"]));
        assert!(matches!(r, Err(Error::InvalidConfig(_))), "{r:?}");
        let r = Gemma4TextConfig::from_gemma_config(&json!({"model_type": "gemma4_unified"}));
        assert!(matches!(r, Err(Error::InvalidConfig(_))), "{r:?}");
    }

    #[test]
    fn last_layer_is_forced_to_full_attention() {
        let cfg = with_text("layer_types", json!(vec!["sliding_attention"; 48])).unwrap();
        let kinds = cfg.layer_kinds().unwrap();
        assert_eq!(kinds[47], Gemma4LayerType::FullAttention);
        assert_eq!(kinds[46], Gemma4LayerType::SlidingAttention);
    }
}

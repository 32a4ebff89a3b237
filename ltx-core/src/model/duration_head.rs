//! Port of `ltx_core/duration_head/` (`duration_head.py`, `model_configurator.py`, reference 1.2.0):
//! the LTX-2.5 regression head that predicts a shot's duration in seconds from the text connectors'
//! output tokens.
//!
//! Each stream present (video `[B, T_v, cross_attention_dim]`, audio `[B, T_a,
//! audio_cross_attention_dim]`) is projected to `pooler_hidden_dim` and tagged with a learned
//! modality vector; the tokens are concatenated (video first) and read by `num_queries` learned
//! queries through one `torch.nn.MultiheadAttention` (packed `in_proj_weight` `[3·D, D]`, no
//! mask: every connector token is valid). A two-layer tanh-GELU MLP maps the flattened pooled
//! queries to a log-duration, returned exponentiated.

use candle_core::{DType, Module, Tensor, D};
use candle_nn::{Linear, VarBuilder};
use serde::Deserialize;
use serde_json::Value;

use crate::error::{bad_shape, unsupported, Error, Result};
use crate::kernels::activations::gelu_tanh;
use crate::loader::SDOps;

/// Checkpoint key prefix of the head, in its own file and in a combined checkpoint alike.
pub const DURATION_HEAD_PREFIX: &str = "duration_head.";

/// The reference's `DURATION_HEAD_KEY_OPS`: keep `duration_head.*` and strip the prefix.
pub fn duration_head_key_ops() -> SDOps {
    SDOps::new("DURATION_HEAD_KEY_OPS")
        .with_matching(DURATION_HEAD_PREFIX, "")
        .with_replacement(DURATION_HEAD_PREFIX, "")
}

fn d_video_dim() -> usize {
    4096
}
fn d_audio_dim() -> usize {
    2048
}
fn d_pooler_hidden_dim() -> usize {
    256
}
fn d_num_queries() -> usize {
    1
}
fn d_num_pooler_heads() -> usize {
    4
}
fn d_mlp_hidden() -> usize {
    256
}

/// The two widths the head reads from the `transformer` section (the connectors' output widths);
/// every other transformer key is ignored here.
#[derive(Deserialize)]
struct ConnectorWidths {
    #[serde(default = "d_video_dim")]
    cross_attention_dim: usize,
    #[serde(default = "d_audio_dim")]
    audio_cross_attention_dim: usize,
}

/// The `duration_head` section. Its schema is a placeholder in the reference (read with
/// `dict.get`), so unknown keys are ignored there and here.
#[derive(Deserialize)]
struct HeadSection {
    #[serde(default = "d_pooler_hidden_dim")]
    pooler_hidden_dim: usize,
    #[serde(default = "d_num_queries")]
    num_queries: usize,
    #[serde(default = "d_num_pooler_heads")]
    num_pooler_heads: usize,
    #[serde(default = "d_mlp_hidden")]
    mlp_hidden: usize,
}

/// Widths of a [`DurationHead`] (the released 2.5 head: 4096 / 2048 → 256, 1 query, 4 heads,
/// MLP 256; 1,903,361 parameters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurationHeadConfig {
    /// Video connector output width (`transformer.cross_attention_dim`).
    pub video_cross_attention_dim: usize,
    /// Audio connector output width (`transformer.audio_cross_attention_dim`).
    pub audio_cross_attention_dim: usize,
    pub pooler_hidden_dim: usize,
    pub num_queries: usize,
    pub num_pooler_heads: usize,
    pub mlp_hidden: usize,
}

/// `config[name]` as a JSON object (absent or `null`: empty), or a typed error.
fn section(config: &Value, name: &str) -> Result<Value> {
    match config.get(name) {
        None | Some(Value::Null) => Ok(Value::Object(Default::default())),
        Some(v @ Value::Object(_)) => Ok(v.clone()),
        Some(other) => Err(Error::InvalidConfig(format!(
            "`{name}` config must be an object, got {other}"
        ))),
    }
}

impl DurationHeadConfig {
    /// Reads a checkpoint's `config` metadata (`{"transformer": {...}, "duration_head": {...}}`)
    /// with the reference configurator's defaults, then [`DurationHeadConfig::validate`]s it.
    pub fn from_checkpoint_config(config: &Value) -> Result<Self> {
        if !config.is_object() {
            return Err(Error::InvalidConfig(format!(
                "checkpoint config must be an object, got {config}"
            )));
        }
        let widths: ConnectorWidths = serde_json::from_value(section(config, "transformer")?)
            .map_err(|e| Error::InvalidConfig(format!("transformer config: {e}")))?;
        let head: HeadSection = serde_json::from_value(section(config, "duration_head")?)
            .map_err(|e| Error::InvalidConfig(format!("duration_head config: {e}")))?;
        let cfg = Self {
            video_cross_attention_dim: widths.cross_attention_dim,
            audio_cross_attention_dim: widths.audio_cross_attention_dim,
            pooler_hidden_dim: head.pooler_hidden_dim,
            num_queries: head.num_queries,
            num_pooler_heads: head.num_pooler_heads,
            mlp_hidden: head.mlp_hidden,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Widths torch would refuse or that give an empty model: every width and count positive,
    /// `num_pooler_heads` dividing `pooler_hidden_dim` (`nn.MultiheadAttention`'s assert).
    pub fn validate(&self) -> Result<()> {
        let widths = [
            (
                "transformer.cross_attention_dim",
                self.video_cross_attention_dim,
            ),
            (
                "transformer.audio_cross_attention_dim",
                self.audio_cross_attention_dim,
            ),
            ("duration_head.pooler_hidden_dim", self.pooler_hidden_dim),
            ("duration_head.num_queries", self.num_queries),
            ("duration_head.num_pooler_heads", self.num_pooler_heads),
            ("duration_head.mlp_hidden", self.mlp_hidden),
        ];
        for (key, value) in widths {
            if value == 0 {
                return Err(unsupported(key, value, "a positive integer"));
            }
        }
        if self.pooler_hidden_dim % self.num_pooler_heads != 0 {
            return Err(unsupported(
                "duration_head.num_pooler_heads",
                self.num_pooler_heads,
                &format!(
                    "a divisor of duration_head.pooler_hidden_dim ({})",
                    self.pooler_hidden_dim
                ),
            ));
        }
        Ok(())
    }

    /// Width of one pooler attention head.
    pub fn pooler_head_dim(&self) -> usize {
        self.pooler_hidden_dim / self.num_pooler_heads
    }
}

/// `torch.nn.MultiheadAttention(embed_dim, num_heads, batch_first=True)` as a cross-attention
/// (keys `in_proj_weight` `[3·D, D]`, `in_proj_bias` `[3·D]` holding q, k, v in that order,
/// `out_proj.{weight,bias}`), unmasked.
#[derive(Clone, Debug)]
struct MultiheadAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    num_heads: usize,
    head_dim: usize,
}

impl MultiheadAttention {
    fn new(embed_dim: usize, num_heads: usize, vb: VarBuilder) -> Result<Self> {
        let w = vb.get((3 * embed_dim, embed_dim), "in_proj_weight")?;
        let b = vb.get(3 * embed_dim, "in_proj_bias")?;
        let part = |i: usize| -> Result<Linear> {
            Ok(Linear::new(
                w.narrow(0, i * embed_dim, embed_dim)?.contiguous()?,
                Some(b.narrow(0, i * embed_dim, embed_dim)?.contiguous()?),
            ))
        };
        Ok(Self {
            q_proj: part(0)?,
            k_proj: part(1)?,
            v_proj: part(2)?,
            out_proj: candle_nn::linear(embed_dim, embed_dim, vb.pp("out_proj"))?,
            num_heads,
            head_dim: embed_dim / num_heads,
        })
    }

    /// `q` `[B, Tq, D]` (already projected) attends over `tokens` `[B, Tk, D]` → `[B, Tq, D]`:
    /// per head `softmax(q·kᵀ/√d)·v`, scores and softmax in f32, then `out_proj`.
    fn forward(&self, q: &Tensor, tokens: &Tensor) -> Result<Tensor> {
        let (b, tq, embed) = q.dims3()?;
        let heads = |x: &Tensor| -> Result<Tensor> {
            let t = x.dim(1)?;
            Ok(x.reshape((b, t, self.num_heads, self.head_dim))?
                .transpose(1, 2)?
                .to_dtype(DType::F32)?
                .contiguous()?)
        };
        let q = heads(q)?;
        let k = heads(&self.k_proj.forward(tokens)?)?;
        let v = heads(&self.v_proj.forward(tokens)?)?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let scores = (q.matmul(&k.transpose(2, 3)?.contiguous()?)? * scale)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = probs
            .matmul(&v)?
            .to_dtype(tokens.dtype())?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, tq, embed))?;
        Ok(self.out_proj.forward(&out)?)
    }
}

/// The reference's `AttentionPooler`: `num_queries` learned queries cross-attending over the
/// tokens, giving `[B, num_queries, D]` whatever the sequence length.
#[derive(Clone, Debug)]
struct AttentionPooler {
    query_tokens: Tensor,
    cross_attn: MultiheadAttention,
}

impl AttentionPooler {
    fn new(cfg: &DurationHeadConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            query_tokens: vb.get((cfg.num_queries, cfg.pooler_hidden_dim), "query_tokens")?,
            cross_attn: MultiheadAttention::new(
                cfg.pooler_hidden_dim,
                cfg.num_pooler_heads,
                vb.pp("cross_attn"),
            )?,
        })
    }

    /// `tokens` `[B, T, D]` → `[B, num_queries, D]`.
    fn forward(&self, tokens: &Tensor) -> Result<Tensor> {
        let b = tokens.dim(0)?;
        // the queries are the same for every sample: project once, then broadcast
        let q = self.cross_attn.q_proj.forward(&self.query_tokens)?;
        let (nq, d) = q.dims2()?;
        let q = q.unsqueeze(0)?.broadcast_as((b, nq, d))?.contiguous()?;
        self.cross_attn.forward(&q, tokens)
    }
}

/// The duration head. Field names are the checkpoint keys below `duration_head.`.
#[derive(Clone, Debug)]
pub struct DurationHead {
    video_input_proj: Linear,
    video_modality_emb: Tensor,
    audio_input_proj: Linear,
    audio_modality_emb: Tensor,
    attention_pooler: AttentionPooler,
    mlp_hidden: Linear,
    mlp_out: Linear,
    cfg: DurationHeadConfig,
}

impl DurationHead {
    /// Builds the head from `vb` (keys without the `duration_head.` prefix: see
    /// [`duration_head_key_ops`]); every one of its 15 tensors is required.
    pub fn new(cfg: &DurationHeadConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let hidden = cfg.pooler_hidden_dim;
        Ok(Self {
            video_input_proj: candle_nn::linear(
                cfg.video_cross_attention_dim,
                hidden,
                vb.pp("video_input_proj"),
            )?,
            video_modality_emb: vb.get(hidden, "video_modality_emb")?,
            audio_input_proj: candle_nn::linear(
                cfg.audio_cross_attention_dim,
                hidden,
                vb.pp("audio_input_proj"),
            )?,
            audio_modality_emb: vb.get(hidden, "audio_modality_emb")?,
            attention_pooler: AttentionPooler::new(cfg, vb.pp("attention_pooler"))?,
            mlp_hidden: candle_nn::linear(
                hidden * cfg.num_queries,
                cfg.mlp_hidden,
                vb.pp("mlp_hidden"),
            )?,
            mlp_out: candle_nn::linear(cfg.mlp_hidden, 1, vb.pp("mlp_out"))?,
            cfg: *cfg,
        })
    }

    pub fn config(&self) -> &DurationHeadConfig {
        &self.cfg
    }

    /// One stream's tokens `[B, T, width]` → `[B, T, pooler_hidden_dim]` in the weights' dtype.
    fn project(
        &self,
        what: &str,
        tokens: &Tensor,
        width: usize,
        proj: &Linear,
        emb: &Tensor,
    ) -> Result<Tensor> {
        let dims = tokens.dims();
        if dims.len() != 3 || dims[2] != width || dims[1] == 0 {
            return Err(bad_shape(what, dims, format!("[B, T, {width}] with T > 0")));
        }
        let tokens = tokens.to_dtype(emb.dtype())?;
        Ok(proj.forward(&tokens)?.broadcast_add(emb)?)
    }

    /// Predicted durations in seconds, `[B]`, from the video connector tokens `[B, T_v,
    /// cross_attention_dim]`, the audio ones `[B, T_a, audio_cross_attention_dim]`, or both (same
    /// `B`). Inputs are cast to the weights' dtype.
    pub fn forward(&self, video: Option<&Tensor>, audio: Option<&Tensor>) -> Result<Tensor> {
        let mut groups = Vec::with_capacity(2);
        if let Some(v) = video {
            groups.push(self.project(
                "duration head video tokens",
                v,
                self.cfg.video_cross_attention_dim,
                &self.video_input_proj,
                &self.video_modality_emb,
            )?);
        }
        if let Some(a) = audio {
            groups.push(self.project(
                "duration head audio tokens",
                a,
                self.cfg.audio_cross_attention_dim,
                &self.audio_input_proj,
                &self.audio_modality_emb,
            )?);
        }
        if groups.is_empty() {
            return Err(Error::InvalidInput(
                "the duration head needs video tokens, audio tokens or both".into(),
            ));
        }
        if let [v, a] = groups.as_slice() {
            if v.dim(0)? != a.dim(0)? {
                return Err(Error::InvalidInput(format!(
                    "the duration head's video and audio tokens have batch sizes {} and {}",
                    v.dim(0)?,
                    a.dim(0)?
                )));
            }
        }
        let tokens = Tensor::cat(&groups, 1)?;
        let pooled = self.attention_pooler.forward(&tokens)?;
        let pooled = pooled.flatten_from(1)?;
        let hidden = gelu_tanh(&self.mlp_hidden.forward(&pooled)?.contiguous()?)?;
        let log_seconds = self.mlp_out.forward(&hidden)?.squeeze(D::Minus1)?;
        Ok(log_seconds.exp()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use serde_json::json;

    fn released() -> Value {
        json!({"duration_head": {}, "transformer": {"audio_cross_attention_dim": 2048, "cross_attention_dim": 4096}})
    }

    #[test]
    fn released_config_and_parameter_count() -> Result<()> {
        let cfg = DurationHeadConfig::from_checkpoint_config(&released())?;
        assert_eq!(
            cfg,
            DurationHeadConfig {
                video_cross_attention_dim: 4096,
                audio_cross_attention_dim: 2048,
                pooler_hidden_dim: 256,
                num_queries: 1,
                num_pooler_heads: 4,
                mlp_hidden: 256,
            }
        );
        assert_eq!(DurationHeadConfig::from_checkpoint_config(&json!({}))?, cfg);
        let map = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        DurationHead::new(&cfg, vb)?;
        let vars = map.data().lock().unwrap_or_else(|e| e.into_inner());
        let params: usize = vars.values().map(|v| v.as_tensor().elem_count()).sum();
        assert_eq!((vars.len(), params), (15, 1_903_361));
        Ok(())
    }

    #[test]
    fn bad_configs_are_typed_errors() {
        let bad = [
            json!({"duration_head": {"num_pooler_heads": 3}}),
            json!({"duration_head": {"num_queries": 0}}),
            json!({"duration_head": {"mlp_hidden": 0}}),
            json!({"transformer": {"cross_attention_dim": 0}}),
            json!({"duration_head": {"pooler_hidden_dim": 0}}),
        ];
        for c in bad {
            let err = DurationHeadConfig::from_checkpoint_config(&c).unwrap_err();
            assert!(matches!(err, Error::UnsupportedConfig { .. }), "{c}: {err}");
        }
        for c in [
            json!({"duration_head": []}),
            json!({"transformer": 3}),
            json!({"duration_head": {"mlp_hidden": "8"}}),
            json!([1]),
        ] {
            let err = DurationHeadConfig::from_checkpoint_config(&c).unwrap_err();
            assert!(matches!(err, Error::InvalidConfig(_)), "{c}: {err}");
        }
    }

    #[test]
    fn forward_shapes_and_input_errors() -> Result<()> {
        let dev = Device::Cpu;
        let cfg = DurationHeadConfig::from_checkpoint_config(&json!({
            "transformer": {"cross_attention_dim": 8, "audio_cross_attention_dim": 4},
            "duration_head": {"pooler_hidden_dim": 8, "num_queries": 2, "num_pooler_heads": 2, "mlp_hidden": 4}
        }))?;
        let head = DurationHead::new(&cfg, VarBuilder::zeros(DType::F32, &dev))?;
        let v = Tensor::ones((3, 5, 8), DType::F32, &dev)?;
        let a = Tensor::ones((3, 2, 4), DType::F32, &dev)?;
        // zero weights: log-duration 0, one second
        let s = head.forward(Some(&v), Some(&a))?;
        assert_eq!(s.to_vec1::<f32>()?, vec![1.0; 3]);
        assert_eq!(head.forward(None, Some(&a))?.dims(), &[3]);
        assert!(matches!(
            head.forward(None, None),
            Err(Error::InvalidInput(_))
        ));
        assert!(matches!(
            head.forward(Some(&a), None),
            Err(Error::TensorShape { .. })
        ));
        let a1 = Tensor::ones((1, 2, 4), DType::F32, &dev)?;
        assert!(matches!(
            head.forward(Some(&v), Some(&a1)),
            Err(Error::InvalidInput(_))
        ));
        Ok(())
    }

    #[test]
    fn key_ops_strip_the_prefix() {
        let ops = duration_head_key_ops();
        assert_eq!(
            ops.apply_to_key("duration_head.attention_pooler.cross_attn.in_proj_weight")
                .as_deref(),
            Some("attention_pooler.cross_attn.in_proj_weight")
        );
        assert_eq!(ops.apply_to_key("model.diffusion_model.x"), None);
    }
}

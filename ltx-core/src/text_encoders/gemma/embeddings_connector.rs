//! Port of `ltx_core/text_encoders/gemma/embeddings_connector.py`: a small 1-D transformer that
//! turns the text features into the transformer's context, with learnable registers filling the
//! padded positions.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;
use serde_json::Value;

use crate::error::Error;
use crate::model::transformer::attention::{rms_norm, Attention, AttentionInputs};
use crate::model::transformer::feed_forward::FeedForward;
use crate::model::transformer::rope::{precompute_freqs_cis, RopeSpec, RopeType};
use crate::quantization::LinearSource;

/// Connector settings (read from the checkpoint's `transformer` config).
#[derive(Clone, Debug, PartialEq)]
pub struct Embeddings1DConnectorConfig {
    pub attention_head_dim: usize,
    pub num_attention_heads: usize,
    pub num_layers: usize,
    pub positional_embedding_theta: f64,
    pub positional_embedding_max_pos: Vec<usize>,
    /// Learnable registers that replace the padding (the configurators always use 128).
    pub num_learnable_registers: Option<usize>,
    pub rope_type: RopeType,
    pub double_precision_rope: bool,
    pub apply_gated_attention: bool,
    /// Biases of the feed-forward linears (`connector_ff_bias`, default true).
    pub ff_bias: bool,
}

impl Embeddings1DConnectorConfig {
    /// The video connector (`connector_*` keys) or the audio one (`audio_connector_*`, falling back
    /// to the video keys), as the reference configurators read them.
    pub fn from_transformer_config(t: &Value, audio: bool) -> crate::Result<Self> {
        let int = |k: &str, fallback: Option<&str>, default: usize| -> crate::Result<usize> {
            let v = t.get(k).or_else(|| fallback.and_then(|f| t.get(f)));
            match v {
                None => Ok(default),
                Some(v) => v.as_u64().map(|x| x as usize).ok_or_else(|| {
                    Error::InvalidConfig(format!("transformer.{k} must be an integer"))
                }),
            }
        };
        let (heads, head_dim, layers) = if audio {
            (
                int(
                    "audio_connector_num_attention_heads",
                    Some("connector_num_attention_heads"),
                    30,
                )?,
                int(
                    "audio_connector_attention_head_dim",
                    Some("connector_attention_head_dim"),
                    128,
                )?,
                int(
                    "audio_connector_num_layers",
                    Some("connector_num_layers"),
                    2,
                )?,
            )
        } else {
            (
                int("connector_num_attention_heads", None, 30)?,
                int("connector_attention_head_dim", None, 128)?,
                int("connector_num_layers", None, 2)?,
            )
        };
        let max_pos = match t.get("connector_positional_embedding_max_pos") {
            None => vec![1],
            Some(v) => serde_json::from_value::<Vec<usize>>(v.clone()).map_err(|e| {
                Error::InvalidConfig(format!(
                    "transformer.connector_positional_embedding_max_pos: {e}"
                ))
            })?,
        };
        if max_pos.len() != 1 || max_pos[0] == 0 {
            return Err(Error::InvalidConfig(format!(
                "connector max_pos must be one positive entry, got {max_pos:?}"
            )));
        }
        let rope_type = match t.get("rope_type") {
            None => RopeType::default(),
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| Error::InvalidConfig(format!("transformer.rope_type: {e}")))?,
        };
        Ok(Self {
            attention_head_dim: head_dim,
            num_attention_heads: heads,
            num_layers: layers,
            positional_embedding_theta: 10000.0,
            positional_embedding_max_pos: max_pos,
            num_learnable_registers: Some(128),
            rope_type,
            double_precision_rope: t.get("frequencies_precision").and_then(Value::as_str)
                == Some("float64"),
            apply_gated_attention: t
                .get("connector_apply_gated_attention")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            ff_bias: match t.get("connector_ff_bias") {
                None => true,
                Some(v) => v.as_bool().ok_or_else(|| {
                    Error::InvalidConfig("transformer.connector_ff_bias must be a boolean".into())
                })?,
            },
        })
    }

    pub fn inner_dim(&self) -> usize {
        self.num_attention_heads * self.attention_head_dim
    }
}

struct Block {
    attn1: Attention,
    ff: FeedForward,
}

/// `Embeddings1DConnector`.
pub struct Embeddings1DConnector {
    cfg: Embeddings1DConnectorConfig,
    blocks: Vec<Block>,
    learnable_registers: Option<Tensor>,
}

impl Embeddings1DConnector {
    pub fn new(cfg: &Embeddings1DConnectorConfig, vb: VarBuilder) -> Result<Self> {
        let dim = cfg.inner_dim();
        let blocks = (0..cfg.num_layers)
            .map(|i| {
                let vb = vb.pp("transformer_1d_blocks").pp(i);
                Ok(Block {
                    attn1: Attention::new(
                        dim,
                        None,
                        cfg.num_attention_heads,
                        cfg.attention_head_dim,
                        1e-6,
                        cfg.apply_gated_attention,
                        vb.pp("attn1"),
                        &LinearSource::wide(),
                    )?,
                    ff: FeedForward::new(
                        dim,
                        dim,
                        4,
                        cfg.ff_bias,
                        vb.pp("ff"),
                        &LinearSource::wide(),
                    )?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let learnable_registers = match cfg.num_learnable_registers {
            Some(n) if n > 0 => Some(vb.get((n, dim), "learnable_registers")?),
            _ => None,
        };
        Ok(Self {
            cfg: cfg.clone(),
            blocks,
            learnable_registers,
        })
    }

    pub fn config(&self) -> &Embeddings1DConnectorConfig {
        &self.cfg
    }

    /// The reference's register fill: each row's valid tokens (additive mask ≥ −9000), in order,
    /// compacted to the front (zeros after them), then position `j` keeps that compacted value
    /// where the *reversed* validity row is 1 and takes register `j mod R` elsewhere. For the
    /// left-padded prompts the pipelines use, that is the valid tokens followed by registers. The
    /// mask becomes all zeros (full attention).
    fn replace_padding(
        &self,
        x: &Tensor,
        mask: &Tensor,
        registers: &Tensor,
    ) -> crate::Result<(Tensor, Tensor)> {
        let (b, t, _) = x.dims3()?;
        let n = registers.dim(0)?;
        if t % n != 0 {
            return Err(Error::InvalidInput(format!(
                "text length {t} must be a multiple of the {n} learnable registers"
            )));
        }
        let tiled = registers.to_dtype(x.dtype())?.repeat((t / n, 1))?; // [T, D]
        let rows_mask: Vec<Vec<f32>> = mask
            .to_dtype(DType::F32)?
            .reshape((b, t))?
            .to_vec2::<f32>()?;
        let mut rows = Vec::with_capacity(b);
        for (i, row) in rows_mask.iter().enumerate() {
            let valid: Vec<bool> = row.iter().map(|m| *m >= -9000.0).collect();
            let idx: Vec<u32> = (0..t as u32).filter(|&j| valid[j as usize]).collect();
            let mut parts = Vec::new();
            let mut j = 0;
            // runs of positions taking compacted tokens (reversed validity) or registers
            while j < t {
                let from_tokens = valid[t - 1 - j];
                let mut k = j;
                while k < t && valid[t - 1 - k] == from_tokens {
                    k += 1;
                }
                if from_tokens {
                    let take: Vec<u32> =
                        (j..k).filter(|&p| p < idx.len()).map(|p| idx[p]).collect();
                    if !take.is_empty() {
                        let ids = Tensor::new(take.as_slice(), x.device())?;
                        parts.push(x.get(i)?.index_select(&ids, 0)?);
                    }
                    let zeros = (k - j) - take.len();
                    if zeros > 0 {
                        parts.push(Tensor::zeros((zeros, x.dim(2)?), x.dtype(), x.device())?);
                    }
                } else {
                    parts.push(tiled.narrow(0, j, k - j)?);
                }
                j = k;
            }
            rows.push(Tensor::cat(&parts, 0)?);
        }
        Ok((Tensor::stack(&rows, 0)?, mask.zeros_like()?))
    }

    /// `hidden_states` `[B, T, D]`, additive `attention_mask` `[B, 1, 1, T]` (0 keep, very negative
    /// drop) -> (encoded `[B, T, D]`, the mask after register replacement).
    pub fn forward(
        &self,
        hidden_states: &Tensor,
        attention_mask: &Tensor,
    ) -> crate::Result<(Tensor, Tensor)> {
        let (mut x, mask) = match &self.learnable_registers {
            Some(r) => self.replace_padding(hidden_states, attention_mask, r)?,
            None => (hidden_states.clone(), attention_mask.clone()),
        };
        let t = x.dim(1)?;
        let positions = Tensor::arange(0f32, t as f32, x.device())?.reshape((1, 1, t))?;
        let spec = RopeSpec {
            theta: self.cfg.positional_embedding_theta,
            max_pos: self.cfg.positional_embedding_max_pos.clone(),
            use_middle_indices_grid: false,
            num_attention_heads: self.cfg.num_attention_heads,
            rope_type: self.cfg.rope_type,
            double_precision: self.cfg.double_precision_rope,
        };
        let pe = precompute_freqs_cis(&positions, self.cfg.inner_dim(), x.dtype(), &spec)?;
        let mask_x = mask.to_dtype(x.dtype())?;
        for block in &self.blocks {
            let h = rms_norm(&x, None, 1e-6)?;
            let a = block.attn1.forward(
                &h,
                AttentionInputs {
                    mask: Some(&mask_x),
                    pe: Some(&pe),
                    ..Default::default()
                },
            )?;
            x = (a + &x)?;
            let h = rms_norm(&x, None, 1e-6)?;
            x = (block.ff.forward(&h)? + &x)?;
        }
        Ok((rms_norm(&x, None, 1e-6)?, mask))
    }
}

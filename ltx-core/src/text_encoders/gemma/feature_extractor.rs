//! Port of `ltx_core/text_encoders/gemma/feature_extractor.py`: Gemma hidden states of every
//! layer `[B, T, D, L]` -> one feature vector per token.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::{Linear, VarBuilder};
use serde_json::Value;

use crate::error::{unsupported, Error};

/// Width and depth of the Gemma model whose hidden states are aggregated (the reference
/// hard-codes Gemma-3 12B: 3840 wide, 48 layers + the embeddings = 49 states).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmaDims {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
}

impl Default for GemmaDims {
    fn default() -> Self {
        Self {
            hidden_size: 3840,
            num_hidden_layers: 48,
        }
    }
}

impl GemmaDims {
    /// Hidden states per token: the embeddings plus one per layer.
    pub fn num_states(&self) -> usize {
        self.num_hidden_layers + 1
    }

    pub fn flat_dim(&self) -> usize {
        self.hidden_size * self.num_states()
    }
}

/// Which side of a batch row the padding is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaddingSide {
    Left,
    Right,
}

/// The two released aggregation schemes.
#[derive(Clone, Debug)]
pub enum FeatureExtractor {
    /// 19B: per-sample, per-layer masked mean / range normalisation, one projection to the Gemma
    /// width, shared by video and audio.
    V1 { aggregate_embed: Linear },
    /// 2.3: per-token RMS normalisation, separate video and audio projections (with bias) to the
    /// transformer widths, each input rescaled by `√(out / hidden)`.
    V2 {
        video_aggregate_embed: Linear,
        audio_aggregate_embed: Linear,
        embedding_dim: usize,
    },
}

/// The 2.3 keys that select `V2`, with the only values the reference accepts.
const V2_KEYS: [(&str, bool); 4] = [
    ("caption_proj_before_connector", true),
    ("caption_projection_first_linear", false),
    ("caption_proj_input_norm", false),
    ("caption_projection_second_linear", false),
];

fn linear(i: usize, o: usize, bias: bool, vb: VarBuilder) -> Result<Linear> {
    let w = vb.get((o, i), "weight")?;
    let b = if bias { Some(vb.get(o, "bias")?) } else { None };
    Ok(Linear::new(w, b))
}

impl FeatureExtractor {
    /// Chooses V1 or V2 from the checkpoint's `transformer` config like the reference: none of the
    /// V2 keys → V1; all of them with the expected values → V2; anything else is unsupported.
    pub fn new(transformer: &Value, dims: GemmaDims, vb: VarBuilder) -> crate::Result<Self> {
        let present: Vec<_> = V2_KEYS
            .iter()
            .filter(|(k, _)| transformer.get(*k).is_some())
            .collect();
        if present.is_empty() {
            return Ok(Self::V1 {
                aggregate_embed: linear(
                    dims.flat_dim(),
                    dims.hidden_size,
                    false,
                    vb.pp("aggregate_embed"),
                )?,
            });
        }
        if present.len() != V2_KEYS.len() {
            let missing: Vec<_> = V2_KEYS
                .iter()
                .filter(|(k, _)| transformer.get(*k).is_none())
                .map(|(k, _)| *k)
                .collect();
            return Err(Error::InvalidConfig(format!(
                "partial LTX-2.3 text-projection config, missing {}",
                missing.join(", ")
            )));
        }
        for (k, want) in V2_KEYS {
            if transformer.get(k) != Some(&Value::Bool(want)) {
                return Err(unsupported(
                    &format!("transformer.{k}"),
                    transformer.get(k).cloned().unwrap_or(Value::Null),
                    &want.to_string(),
                ));
            }
        }
        let int = |k: &str| -> crate::Result<usize> {
            transformer
                .get(k)
                .and_then(Value::as_u64)
                .map(|v| v as usize)
                .ok_or_else(|| Error::InvalidConfig(format!("transformer.{k} is required")))
        };
        let video = int("num_attention_heads")? * int("attention_head_dim")?;
        let audio = int("audio_num_attention_heads")? * int("audio_attention_head_dim")?;
        Ok(Self::V2 {
            video_aggregate_embed: linear(
                dims.flat_dim(),
                video,
                true,
                vb.pp("video_aggregate_embed"),
            )?,
            audio_aggregate_embed: linear(
                dims.flat_dim(),
                audio,
                true,
                vb.pp("audio_aggregate_embed"),
            )?,
            embedding_dim: dims.hidden_size,
        })
    }

    /// `hidden_states` `[B, T, D, L]`, `attention_mask` `[B, T]` (1 = token) -> (video features,
    /// audio features) `[B, T, ·]`; V1 returns the same tensor twice.
    pub fn forward(
        &self,
        hidden_states: &Tensor,
        attention_mask: &Tensor,
        padding_side: PaddingSide,
    ) -> Result<(Tensor, Tensor)> {
        let dtype = hidden_states.dtype();
        match self {
            Self::V1 { aggregate_embed } => {
                let lengths = attention_mask.to_dtype(DType::F32)?.sum(D::Minus1)?;
                let normed = norm_and_concat_padded_batch(hidden_states, &lengths, padding_side)?;
                let f = aggregate_embed.forward(&normed.to_dtype(dtype)?)?;
                Ok((f.clone(), f))
            }
            Self::V2 {
                video_aggregate_embed,
                audio_aggregate_embed,
                embedding_dim,
            } => {
                let normed = norm_and_concat_per_token_rms(hidden_states, attention_mask)?
                    .to_dtype(dtype)?;
                let project = |lin: &Linear| -> Result<Tensor> {
                    let out = lin.weight().dim(0)?;
                    let scale = (out as f64 / *embedding_dim as f64).sqrt();
                    lin.forward(&(&normed * scale)?)
                };
                Ok((
                    project(video_aggregate_embed)?,
                    project(audio_aggregate_embed)?,
                ))
            }
        }
    }
}

/// V1 normalisation: per sample and layer, `8·(x − mean) / (max − min + 1e-6)` over the valid
/// tokens and all channels (mean divides by `len·D + 1e-6`), flattened to `[B, T, D·L]`, padding
/// zeroed.
pub fn norm_and_concat_padded_batch(
    encoded: &Tensor,
    sequence_lengths: &Tensor,
    padding_side: PaddingSide,
) -> Result<Tensor> {
    let (b, t, d, l) = encoded.dims4()?;
    let dev = encoded.device();
    let x = encoded.to_dtype(DType::F32)?;
    let idx = Tensor::arange(0f32, t as f32, dev)?.reshape((1, t))?;
    let lens = sequence_lengths.to_dtype(DType::F32)?.reshape((b, 1))?;
    let mask = match padding_side {
        PaddingSide::Right => idx.broadcast_lt(&lens)?,
        PaddingSide::Left => idx.broadcast_ge(&(lens.affine(-1.0, t as f64))?)?,
    }; // [B, T] u8
    let mask4 = mask.reshape((b, t, 1, 1))?.broadcast_as((b, t, d, l))?;
    let zeros = Tensor::zeros((b, t, d, l), DType::F32, dev)?;
    let masked = mask4.where_cond(&x, &zeros)?;
    let denom = (sequence_lengths.to_dtype(DType::F32)? * d as f64)?.reshape((b, 1, 1, 1))?;
    let mean = masked
        .sum_keepdim(1)?
        .sum_keepdim(2)?
        .broadcast_div(&(denom + 1e-6)?)?;
    let inf = Tensor::full(f32::INFINITY, (b, t, d, l), dev)?;
    let x_min = mask4.where_cond(&x, &inf)?.min_keepdim(1)?.min_keepdim(2)?;
    let x_max = mask4
        .where_cond(&x, &inf.neg()?)?
        .max_keepdim(1)?
        .max_keepdim(2)?;
    let range = (x_max - x_min)?;
    let normed = (x.broadcast_sub(&mean)? * 8.0)?.broadcast_div(&(range + 1e-6)?)?;
    let normed = normed.reshape((b, t, d * l))?;
    let mask3 = mask.reshape((b, t, 1))?.broadcast_as((b, t, d * l))?;
    mask3.where_cond(&normed, &Tensor::zeros((b, t, d * l), DType::F32, dev)?)
}

/// V2 normalisation: each token's state of each layer divided by its RMS over the channels
/// (`+1e-6`), flattened to `[B, T, D·L]`, padding zeroed.
pub fn norm_and_concat_per_token_rms(encoded: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
    let (b, t, d, l) = encoded.dims4()?;
    let x = encoded.to_dtype(DType::F32)?;
    let var = x.sqr()?.mean_keepdim(2)?;
    let normed = x
        .broadcast_mul(&(var + 1e-6)?.sqrt()?.recip()?)?
        .reshape((b, t, d * l))?;
    let zero = Tensor::zeros((), attention_mask.dtype(), attention_mask.device())?;
    let keep = attention_mask
        .broadcast_ne(&zero)?
        .reshape((b, t, 1))?
        .broadcast_as((b, t, d * l))?;
    keep.where_cond(&normed, &normed.zeros_like()?)
}

//! The Gemma-4 unified text decoder the reference runs through `transformers` 5.x
//! (`modeling_gemma4_unified`, no `ltx_core` twin): every hidden state for a left-padded batch,
//! as `LTXGemmaTextEncoder.encode` gets them from `model.model(..., output_hidden_states=True)`.
//!
//! Where it differs from Gemma-3 ([`super::super::gemma3`]):
//! - RMSNorm scales by `w` (not `1 + w`); values get a weightless RMSNorm (`v_norm`);
//! - attention scores are not scaled (`scaling = 1.0`: the q/k norms set their size);
//! - full-attention layers have `global_head_dim` heads and, with `attention_k_eq_v`, no
//!   `v_proj`: the values are `k_proj`'s output before `k_norm` and RoPE, over
//!   `num_global_key_value_heads` heads;
//! - RoPE per layer type: `default` (all pairs rotate) or `proportional` (only the first
//!   `partial_rotary_factor` of the pairs rotate, exponents over the full head size);
//! - every layer's output is multiplied by its `layer_scalar` buffer;
//! - `image/video/audio_token_id` in the ids are embedded as the padding token.
//!
//! Text-only input: `use_bidirectional_attention = "vision"` leaves every mask causal.

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{Embedding, Linear, VarBuilder};

use super::super::gemma3::{final_norm_last, masked_bias, push_mask_rows};
use super::config::{Gemma4LayerType, Gemma4TextConfig};
use crate::kernels::activations::gelu_tanh;
use crate::loader::block_store::{BlockStore, BlockStreamer};
use crate::model::transformer::attention::scaled_dot_product_attention_with_scale;

/// Gemma-4's RMSNorm: `x · (mean(x²) + eps)^−½ · w` in f32, cast back; no weight for `v_norm`.
#[derive(Clone, Debug)]
struct Gemma4RmsNorm {
    weight: Option<Tensor>,
    eps: f64,
}

impl Gemma4RmsNorm {
    fn new(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: Some(vb.get(dim, "weight")?.to_dtype(DType::F32)?),
            eps,
        })
    }

    fn without_scale(eps: f64) -> Self {
        Self { weight: None, eps }
    }
}

impl Module for Gemma4RmsNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if crate::kernels::rows::usable(x) {
            return crate::kernels::rows::rms_norm(x, self.weight.as_ref(), self.eps);
        }
        let dtype = x.dtype();
        let xf = x.to_dtype(DType::F32)?;
        let inv = (xf.sqr()?.mean_keepdim(D::Minus1)? + self.eps)?
            .sqrt()?
            .recip()?;
        let y = xf.broadcast_mul(&inv)?;
        match &self.weight {
            Some(w) => y.broadcast_mul(w)?.to_dtype(dtype),
            None => y.to_dtype(dtype),
        }
    }
}

fn linear(i: usize, o: usize, bias: bool, vb: VarBuilder) -> Result<Linear> {
    if bias {
        candle_nn::linear(i, o, vb)
    } else {
        candle_nn::linear_no_bias(i, o, vb)
    }
}

/// `self_attn` of one decoder layer (`Gemma4UnifiedTextAttention`).
struct Gemma4Attention {
    q_proj: Linear,
    k_proj: Linear,
    /// `None` with `attention_k_eq_v` on a full-attention layer.
    v_proj: Option<Linear>,
    o_proj: Linear,
    q_norm: Gemma4RmsNorm,
    k_norm: Gemma4RmsNorm,
    v_norm: Gemma4RmsNorm,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl Gemma4Attention {
    fn new(cfg: &Gemma4TextConfig, kind: Gemma4LayerType, vb: VarBuilder) -> crate::Result<Self> {
        let (heads, kv_heads, head_dim) = cfg.attention_shape(kind)?;
        let (h, bias, eps) = (cfg.hidden_size, cfg.attention_bias, cfg.rms_norm_eps);
        let v_proj = if cfg.uses_k_eq_v(kind) {
            None
        } else {
            Some(linear(h, kv_heads * head_dim, bias, vb.pp("v_proj"))?)
        };
        Ok(Self {
            q_proj: linear(h, heads * head_dim, bias, vb.pp("q_proj"))?,
            k_proj: linear(h, kv_heads * head_dim, bias, vb.pp("k_proj"))?,
            v_proj,
            o_proj: linear(heads * head_dim, h, bias, vb.pp("o_proj"))?,
            q_norm: Gemma4RmsNorm::new(head_dim, eps, vb.pp("q_norm"))?,
            k_norm: Gemma4RmsNorm::new(head_dim, eps, vb.pp("k_norm"))?,
            v_norm: Gemma4RmsNorm::without_scale(eps),
            heads,
            kv_heads,
            head_dim,
        })
    }

    /// `x` `[B, T, hidden]`, `(cos, sin)` `[T, head_dim / 2]`, additive `mask` `[B, 1, T, T]`.
    fn forward(&self, x: &Tensor, (cos, sin): (&Tensor, &Tensor), mask: &Tensor) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let hd = self.head_dim;
        // [B, T, n·hd] -> [B, T, n, hd] -> per-head norm -> [B, n, T, hd]
        let heads = |y: Tensor, n: usize, norm: &Gemma4RmsNorm| -> Result<Tensor> {
            norm.forward(&y.reshape((b, t, n, hd))?)?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = heads(self.q_proj.forward(x)?, self.heads, &self.q_norm)?;
        let k_raw = self.k_proj.forward(x)?;
        let v_raw = match &self.v_proj {
            Some(v) => v.forward(x)?,
            None => k_raw.clone(),
        };
        let k = heads(k_raw, self.kv_heads, &self.k_norm)?;
        let v = heads(v_raw, self.kv_heads, &self.v_norm)?;
        let q = candle_nn::rotary_emb::rope(&q, cos, sin)?;
        let k = candle_nn::rotary_emb::rope(&k, cos, sin)?;
        let attn = scaled_dot_product_attention_with_scale(&q, &k, &v, Some(mask), 1.0)?;
        let attn = attn
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, t, self.heads * hd))?;
        self.o_proj.forward(&attn)
    }
}

/// `mlp`: `down(gelu_tanh(gate(x)) · up(x))`.
struct Gemma4Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Gemma4Mlp {
    fn new(cfg: &Gemma4TextConfig, vb: VarBuilder) -> Result<Self> {
        let (h, m) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            gate_proj: linear(h, m, false, vb.pp("gate_proj"))?,
            up_proj: linear(h, m, false, vb.pp("up_proj"))?,
            down_proj: linear(m, h, false, vb.pp("down_proj"))?,
        })
    }
}

impl Module for Gemma4Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gate = gelu_tanh(&self.gate_proj.forward(x)?)?;
        self.down_proj.forward(&(gate * self.up_proj.forward(x)?)?)
    }
}

/// One decoder layer (`Gemma4UnifiedTextDecoderLayer`), keys under its own prefix `layers.{i}`.
pub struct Gemma4DecoderLayer {
    self_attn: Gemma4Attention,
    mlp: Gemma4Mlp,
    input_layernorm: Gemma4RmsNorm,
    post_attention_layernorm: Gemma4RmsNorm,
    pre_feedforward_layernorm: Gemma4RmsNorm,
    post_feedforward_layernorm: Gemma4RmsNorm,
    /// `[1]`: the layer's output is multiplied by it.
    layer_scalar: Tensor,
    kind: Gemma4LayerType,
}

impl Gemma4DecoderLayer {
    /// Decoder layer `i` from `vb` (its own prefix, `layers.{i}`).
    pub fn new(cfg: &Gemma4TextConfig, i: usize, vb: VarBuilder) -> crate::Result<Self> {
        let kinds = cfg.layer_kinds()?;
        let kind = *kinds.get(i).ok_or_else(|| {
            crate::Error::InvalidInput(format!("layer {i} of a {}-layer model", kinds.len()))
        })?;
        let (h, eps) = (cfg.hidden_size, cfg.rms_norm_eps);
        let norm = |name: &str| Gemma4RmsNorm::new(h, eps, vb.pp(name));
        Ok(Self {
            self_attn: Gemma4Attention::new(cfg, kind, vb.pp("self_attn"))?,
            mlp: Gemma4Mlp::new(cfg, vb.pp("mlp"))?,
            input_layernorm: norm("input_layernorm")?,
            post_attention_layernorm: norm("post_attention_layernorm")?,
            pre_feedforward_layernorm: norm("pre_feedforward_layernorm")?,
            post_feedforward_layernorm: norm("post_feedforward_layernorm")?,
            layer_scalar: vb.get(1, "layer_scalar")?,
            kind,
        })
    }

    /// `x` `[B, T, hidden]` -> `[B, T, hidden]`.
    fn forward(&self, x: &Tensor, rope: (&Tensor, &Tensor), mask: &Tensor) -> Result<Tensor> {
        let h = self.input_layernorm.forward(x)?;
        let attn = self.self_attn.forward(&h, rope, mask)?;
        let x = (x + self.post_attention_layernorm.forward(&attn)?)?;
        let h = self.pre_feedforward_layernorm.forward(&x)?;
        let mlp = self.mlp.forward(&h)?;
        let x = (x + self.post_feedforward_layernorm.forward(&mlp)?)?;
        x.broadcast_mul(&self.layer_scalar.to_dtype(x.dtype())?)
    }
}

/// The Gemma-4 unified text model (`Gemma4UnifiedTextModel` behind `Gemma4UnifiedModel`).
pub struct Gemma4TextModel {
    cfg: Gemma4TextConfig,
    embed_tokens: Embedding,
    layers: BlockStore<Gemma4DecoderLayer>,
    norm: Gemma4RmsNorm,
}

impl Gemma4TextModel {
    /// Weights under the module-side names (`embed_tokens`, `layers.{i}.…`, `norm`).
    pub fn new(cfg: &Gemma4TextConfig, vb: VarBuilder) -> crate::Result<Self> {
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Gemma4DecoderLayer::new(cfg, i, vb.pp("layers").pp(i)))
            .collect::<crate::Result<Vec<_>>>()?;
        Self::with_layers(cfg, vb, BlockStore::resident(layers))
    }

    /// [`Self::new`] with the first `resident` decoder layers built now and the others streamed
    /// by `streamer` on every forward (`vb` holds the weights outside the layers).
    pub fn new_streamed(
        cfg: &Gemma4TextConfig,
        vb: VarBuilder,
        resident: usize,
        streamer: BlockStreamer<Gemma4DecoderLayer>,
    ) -> crate::Result<Self> {
        let layers = BlockStore::streamed(cfg.num_hidden_layers, resident, streamer)?;
        Self::with_layers(cfg, vb, layers)
    }

    fn with_layers(
        cfg: &Gemma4TextConfig,
        vb: VarBuilder,
        layers: BlockStore<Gemma4DecoderLayer>,
    ) -> crate::Result<Self> {
        cfg.validate()?;
        let h = cfg.hidden_size;
        Ok(Self {
            cfg: cfg.clone(),
            embed_tokens: candle_nn::embedding(cfg.vocab_size, h, vb.pp("embed_tokens"))?,
            layers,
            norm: Gemma4RmsNorm::new(h, cfg.rms_norm_eps, vb.pp("norm"))?,
        })
    }

    pub fn config(&self) -> &Gemma4TextConfig {
        &self.cfg
    }

    /// Token embeddings scaled by `√hidden` (rounded to the weight dtype), multimodal placeholder
    /// ids embedded as the padding token; ids checked against the vocabulary.
    fn embed(&self, input_ids: &Tensor) -> crate::Result<Tensor> {
        let pad = self.cfg.pad_token_id.unwrap_or(0);
        let (b, t) = input_ids.dims2()?;
        let ids: Vec<u32> = input_ids
            .to_dtype(DType::U32)?
            .flatten_all()?
            .to_vec1::<u32>()?
            .into_iter()
            .map(|id| {
                if self.cfg.placeholder_token_ids.contains(&id) {
                    pad
                } else {
                    id
                }
            })
            .collect();
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= self.cfg.vocab_size) {
            return Err(crate::Error::InvalidInput(format!(
                "token id {id} is outside the vocabulary ({} tokens)",
                self.cfg.vocab_size
            )));
        }
        let ids = Tensor::from_vec(ids, (b, t), input_ids.device())?;
        let emb = self.embed_tokens.forward(&ids)?;
        let scale = Tensor::new((self.cfg.hidden_size as f64).sqrt() as f32, emb.device())?
            .to_dtype(emb.dtype())?;
        Ok(emb.broadcast_mul(&scale)?)
    }

    /// `(cos, sin)` `[T, head_dim / 2]` of positions `0..t` for layers of `kind`, in `dtype`
    /// (computed in f32 like the reference).
    fn rope(
        &self,
        kind: Gemma4LayerType,
        t: usize,
        dtype: DType,
        dev: &Device,
    ) -> crate::Result<(Tensor, Tensor)> {
        let inv = self.cfg.rope(kind)?.inv_freq();
        let half = inv.len();
        let inv = Tensor::from_vec(inv, (1, half), dev)?;
        let pos = Tensor::arange(0u32, t as u32, dev)?
            .to_dtype(DType::F32)?
            .reshape((t, 1))?;
        let freqs = pos.broadcast_mul(&inv)?;
        Ok((freqs.cos()?.to_dtype(dtype)?, freqs.sin()?.to_dtype(dtype)?))
    }

    /// Additive mask `[B, 1, T, T]` (0 = attend, [`masked_bias`] = masked): causal, padding and,
    /// with `window`, only the last `window` positions; f32 (f64 for an f64 model).
    fn mask(attention_mask: &Tensor, window: Option<usize>, dtype: DType) -> Result<Tensor> {
        let (b, t) = attention_mask.dims2()?;
        let keep = attention_mask.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        let mut m = Vec::with_capacity(b * t * t);
        for row in &keep {
            push_mask_rows(&mut m, row, 0, t, window, masked_bias(dtype));
        }
        let out = if dtype == DType::F64 {
            DType::F64
        } else {
            DType::F32
        };
        Tensor::from_vec(m, (b, 1, t, t), attention_mask.device())?.to_dtype(out)
    }

    /// `input_ids` `[B, T]`, `attention_mask` `[B, T]` (1 = token) -> `num_hidden_layers + 1`
    /// hidden states `[B, T, hidden]`: the embeddings, each layer's output, the last one after
    /// the final norm.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
    ) -> crate::Result<Vec<Tensor>> {
        let (b, t) = input_ids.dims2()?;
        if attention_mask.dims() != [b, t] {
            return Err(crate::error::bad_shape(
                "attention mask",
                attention_mask.dims(),
                format!("[{b}, {t}] (the token ids' shape)"),
            ));
        }
        let mut x = self.embed(input_ids)?;
        let (dtype, dev) = (x.dtype(), x.device().clone());
        let full_mask = Self::mask(attention_mask, None, dtype)?;
        let sliding_mask = Self::mask(attention_mask, Some(self.cfg.sliding_window), dtype)?;
        let rope_full = self.rope(Gemma4LayerType::FullAttention, t, dtype, &dev)?;
        let rope_sliding = match self
            .cfg
            .layer_kinds()?
            .contains(&Gemma4LayerType::SlidingAttention)
        {
            true => Some(self.rope(Gemma4LayerType::SlidingAttention, t, dtype, &dev)?),
            false => None,
        };
        let mut states = Vec::with_capacity(self.layers.len() + 1);
        states.push(x.clone());
        self.layers.for_each(|_, layer| {
            let (rope, mask) = match (layer.kind, &rope_sliding) {
                (Gemma4LayerType::SlidingAttention, Some(r)) => (r, &sliding_mask),
                _ => (&rope_full, &full_mask),
            };
            x = layer.forward(&x, (&rope.0, &rope.1), mask)?;
            states.push(x.clone());
            Ok(())
        })?;
        Ok(final_norm_last(states, &self.norm)?)
    }
}

/// Gemma-4 unified checkpoint keys -> [`Gemma4TextModel`] keys, as ltx-core's
/// `_build_gemma4_unified_llm_key_ops` maps them onto the language model: the Comfy-flat layout
/// of the released text encoder (`model.layers.*`, `model.embed_tokens.*`, `model.norm.*`) or the
/// Hugging Face one (`model.language_model.*`). The vision / audio embedders
/// (`vision_model.*`, `multi_modal_projector.*`, `audio_projector.*`, `model.embed_vision.*`,
/// `model.embed_audio.*`, `model.vision_embedder.*`) are not read.
pub fn gemma4_llm_key_ops() -> crate::loader::SDOps {
    crate::loader::SDOps::new("GEMMA4_UNIFIED_LLM_KEY_OPS")
        .with_matching("model.layers.", "")
        .with_matching("model.embed_tokens.", "")
        .with_matching("model.norm.", "")
        .with_matching("model.language_model.", "")
        .with_replacement("model.language_model.", "")
        .with_prefix_strip("model.")
}

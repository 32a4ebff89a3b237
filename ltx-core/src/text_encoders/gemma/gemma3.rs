//! The Gemma-3 text decoder the reference runs through `transformers` (no `ltx_core` twin): every
//! hidden state (the scaled embeddings, each layer's output, the last one after the final norm)
//! for a left-padded batch.
//!
//! Details that matter (transformers 5.x `modeling_gemma3`):
//! - embeddings are multiplied by `√hidden` rounded to the weight dtype;
//! - RMSNorm scales by `1 + w` and computes in f32 (`(x·w)` then cast, not `cast(x)·w`);
//! - each layer has four norms (input, post-attention, pre- and post-feed-forward) and per-head q/k
//!   norms; sliding-window layers use RoPE base `rope_local_base_freq` unscaled, global layers
//!   `rope_theta` with linear scaling (`inv_freq / factor`);
//! - positions are `0..T` whatever the padding; keys are masked causally, by padding, and for
//!   sliding layers to the last `sliding_window` positions (`j > i − window`);
//! - scores are scaled by `query_pre_attn_scalar^−½`, softmax in f32.

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{Embedding, Linear, VarBuilder};

use crate::loader::block_store::{BlockStore, BlockStreamer};

use super::config::Gemma3TextConfig;
use crate::kernels::activations::gelu_tanh;
use crate::model::transformer::attention::{
    finfo, repeat_kv, scaled_dot_product_attention_with_scale,
};

/// Gemma's RMSNorm: `x / √(mean(x²) + eps) · (1 + w)` in f32, cast back.
#[derive(Clone, Debug)]
struct GemmaRmsNorm {
    weight: Tensor,
    eps: f64,
}

impl GemmaRmsNorm {
    fn new(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get(dim, "weight")?,
            eps,
        })
    }
}

impl Module for GemmaRmsNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let w = (self.weight.to_dtype(DType::F32)? + 1.0)?;
        if crate::kernels::rows::usable(x) {
            return crate::kernels::rows::rms_norm(x, Some(&w), self.eps);
        }
        let dtype = x.dtype();
        let xf = x.to_dtype(DType::F32)?;
        let inv = (xf.sqr()?.mean_keepdim(D::Minus1)? + self.eps)?
            .sqrt()?
            .recip()?;
        xf.broadcast_mul(&inv)?.broadcast_mul(&w)?.to_dtype(dtype)
    }
}

fn linear(i: usize, o: usize, bias: bool, vb: VarBuilder) -> Result<Linear> {
    if bias {
        candle_nn::linear(i, o, vb)
    } else {
        candle_nn::linear_no_bias(i, o, vb)
    }
}

pub struct Gemma3DecoderLayer {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    q_norm: GemmaRmsNorm,
    k_norm: GemmaRmsNorm,
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
    input_layernorm: GemmaRmsNorm,
    post_attention_layernorm: GemmaRmsNorm,
    pre_feedforward_layernorm: GemmaRmsNorm,
    post_feedforward_layernorm: GemmaRmsNorm,
    sliding: bool,
}

/// Keys and values of the tokens a [`Gemma3TextModel`] has seen, per layer (one sequence).
#[derive(Clone, Debug)]
pub struct GemmaKvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
}

impl GemmaKvCache {
    /// Tokens seen so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Gemma3DecoderLayer {
    /// Decoder layer `i` from `vb` (its own prefix, `layers.{i}`).
    pub fn new(cfg: &Gemma3TextConfig, i: usize, vb: VarBuilder) -> Result<Self> {
        let (h, hd) = (cfg.hidden_size, cfg.head_dim);
        let (nh, nkv) = (cfg.num_attention_heads, cfg.num_key_value_heads);
        let (bias, eps) = (cfg.attention_bias, cfg.rms_norm_eps);
        let a = vb.pp("self_attn");
        let m = vb.pp("mlp");
        let norm = |name: &str| GemmaRmsNorm::new(h, eps, vb.pp(name));
        Ok(Gemma3DecoderLayer {
            q_proj: linear(h, nh * hd, bias, a.pp("q_proj"))?,
            k_proj: linear(h, nkv * hd, bias, a.pp("k_proj"))?,
            v_proj: linear(h, nkv * hd, bias, a.pp("v_proj"))?,
            o_proj: linear(nh * hd, h, bias, a.pp("o_proj"))?,
            q_norm: GemmaRmsNorm::new(hd, eps, a.pp("q_norm"))?,
            k_norm: GemmaRmsNorm::new(hd, eps, a.pp("k_norm"))?,
            gate_proj: linear(h, cfg.intermediate_size, false, m.pp("gate_proj"))?,
            up_proj: linear(h, cfg.intermediate_size, false, m.pp("up_proj"))?,
            down_proj: linear(cfg.intermediate_size, h, false, m.pp("down_proj"))?,
            input_layernorm: norm("input_layernorm")?,
            post_attention_layernorm: norm("post_attention_layernorm")?,
            pre_feedforward_layernorm: norm("pre_feedforward_layernorm")?,
            post_feedforward_layernorm: norm("post_feedforward_layernorm")?,
            sliding: cfg.layer_types()[i] == "sliding_attention",
        })
    }
}

/// The Gemma-3 text model (`Gemma3TextModel`).
pub struct Gemma3TextModel {
    cfg: Gemma3TextConfig,
    embed_tokens: Embedding,
    layers: BlockStore<Gemma3DecoderLayer>,
    norm: GemmaRmsNorm,
}

/// `rotate_half`: `[-x2, x1]` of the two halves of the last dim.
fn rotate_half(x: &Tensor) -> Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    let x1 = x.narrow(D::Minus1, 0, d / 2)?;
    let x2 = x.narrow(D::Minus1, d / 2, d - d / 2)?;
    Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)
}

/// The additive bias of a masked key for a model in `dtype`: the reference's `finfo(dtype).min`
/// (finite once the mask is cast to `dtype`, which `f32::MIN` is not in bf16 or f16), no lower
/// than f32's since the scores are f32.
pub(super) fn masked_bias(dtype: DType) -> f32 {
    finfo(dtype).0.max(f32::MIN as f64) as f32
}

/// Additive mask rows `[n, keep.len()]` of the queries at positions `start..start + n`, appended
/// to `out`: 0 where key `j` is a token (`keep[j] != 0`), `j <= i` and, with a `window`,
/// `j + window > i`; `masked` elsewhere.
pub(super) fn push_mask_rows(
    out: &mut Vec<f32>,
    keep: &[f32],
    start: usize,
    n: usize,
    window: Option<usize>,
    masked: f32,
) {
    for i in start..start + n {
        out.extend(keep.iter().enumerate().map(|(j, &valid)| {
            let ok = valid != 0.0 && j <= i && window.is_none_or(|w| j + w > i);
            if ok {
                0.0
            } else {
                masked
            }
        }));
    }
}

impl Gemma3TextModel {
    /// Weights under the module-side names (`embed_tokens`, `layers.{i}.…`, `norm`).
    pub fn new(cfg: &Gemma3TextConfig, vb: VarBuilder) -> Result<Self> {
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Gemma3DecoderLayer::new(cfg, i, vb.pp("layers").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Self::with_layers(cfg, vb, BlockStore::resident(layers))
    }

    /// [`Self::new`] with the first `resident` decoder layers built now and the others streamed
    /// by `streamer` on every forward (`vb` holds the weights outside the layers).
    pub fn new_streamed(
        cfg: &Gemma3TextConfig,
        vb: VarBuilder,
        resident: usize,
        streamer: BlockStreamer<Gemma3DecoderLayer>,
    ) -> crate::Result<Self> {
        let layers = BlockStore::streamed(cfg.num_hidden_layers, resident, streamer)?;
        Ok(Self::with_layers(cfg, vb, layers)?)
    }

    fn with_layers(
        cfg: &Gemma3TextConfig,
        vb: VarBuilder,
        layers: BlockStore<Gemma3DecoderLayer>,
    ) -> Result<Self> {
        let h = cfg.hidden_size;
        Ok(Self {
            cfg: cfg.clone(),
            embed_tokens: candle_nn::embedding(cfg.vocab_size, h, vb.pp("embed_tokens"))?,
            layers,
            norm: GemmaRmsNorm::new(h, cfg.rms_norm_eps, vb.pp("norm"))?,
        })
    }

    pub fn config(&self) -> &Gemma3TextConfig {
        &self.cfg
    }

    /// `(cos, sin)` `[1, 1, T, head_dim]` of positions `start..start + t` for one layer type, in
    /// `dtype`.
    fn rope(
        &self,
        start: usize,
        t: usize,
        sliding: bool,
        dtype: DType,
        device: &Device,
    ) -> Result<(Tensor, Tensor)> {
        let d = self.cfg.head_dim;
        let (base, factor) = if sliding {
            (self.cfg.rope_local_base_freq, 1.0)
        } else {
            let factor = match &self.cfg.rope_scaling {
                Some(s) if s.rope_type == "linear" => s.factor,
                _ => 1.0,
            };
            (self.cfg.rope_theta, factor)
        };
        // f32 like the reference: 1 / base^(2i/d), then / factor
        let inv: Vec<f32> = (0..d / 2)
            .map(|i| {
                let e = (2 * i) as f32 / d as f32;
                (1.0f32 / (base as f32).powf(e)) / factor as f32
            })
            .collect();
        let inv = Tensor::from_vec(inv, (1, d / 2), device)?;
        let pos = Tensor::arange(start as u32, (start + t) as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((t, 1))?;
        let freqs = pos.broadcast_mul(&inv)?;
        let emb = Tensor::cat(&[&freqs, &freqs], 1)?.reshape((1, 1, t, d))?;
        Ok((emb.cos()?.to_dtype(dtype)?, emb.sin()?.to_dtype(dtype)?))
    }

    /// One decoder layer on `x` `[B, T, hidden]`. With `cache`, the new keys and values are
    /// appended to the layer's cached ones and the queries attend to all of them (`mask` then has
    /// one column per cached + new position). `mask` `None`: every key is attended.
    fn layer_forward(
        &self,
        layer: &Gemma3DecoderLayer,
        x: &Tensor,
        (cos, sin): (&Tensor, &Tensor),
        mask: Option<&Tensor>,
        cache: Option<&mut Option<(Tensor, Tensor)>>,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let (nh, nkv, hd) = (
            self.cfg.num_attention_heads,
            self.cfg.num_key_value_heads,
            self.cfg.head_dim,
        );
        let scale = self.cfg.query_pre_attn_scalar.powf(-0.5);
        let dtype = x.dtype();
        let h = layer.input_layernorm.forward(x)?;
        let heads = |lin: &Linear, n: usize| -> Result<Tensor> {
            lin.forward(&h)?
                .reshape((b, t, n, hd))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = layer.q_norm.forward(&heads(&layer.q_proj, nh)?)?;
        let k = layer.k_norm.forward(&heads(&layer.k_proj, nkv)?)?;
        let v = heads(&layer.v_proj, nkv)?;
        let q = (q.broadcast_mul(cos)? + rotate_half(&q)?.broadcast_mul(sin)?)?;
        let k = (k.broadcast_mul(cos)? + rotate_half(&k)?.broadcast_mul(sin)?)?;
        let (k, v) = match cache {
            None => (k, v),
            Some(slot) => {
                let (k, v) = match slot.take() {
                    None => (k, v),
                    Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
                };
                *slot = Some((k.clone(), v.clone()));
                (k, v)
            }
        };
        let attn = match self.cfg.attn_logit_softcapping {
            // grouped-query attention: each key/value head serves nh / nkv query heads
            None => scaled_dot_product_attention_with_scale(&q, &k, &v, mask, scale)?,
            Some(cap) => {
                let (k, v) = (repeat_kv(&k, nh)?, repeat_kv(&v, nh)?);
                let s = (q
                    .to_dtype(DType::F32)?
                    .matmul(&k.to_dtype(DType::F32)?.t()?)?
                    * scale)?;
                let s = ((s / cap)?.tanh()? * cap)?;
                let s = match mask {
                    Some(m) => s.broadcast_add(&m.to_dtype(DType::F32)?)?,
                    None => s,
                };
                candle_nn::ops::softmax_last_dim(&s)?
                    .matmul(&v.to_dtype(DType::F32)?)?
                    .to_dtype(dtype)?
            }
        };
        let attn = attn
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, t, nh * hd))?;
        let attn = layer.o_proj.forward(&attn)?;
        let x = (x + layer.post_attention_layernorm.forward(&attn)?)?;
        let h = layer.pre_feedforward_layernorm.forward(&x)?;
        let mlp = layer
            .down_proj
            .forward(&(gelu_tanh(&layer.gate_proj.forward(&h)?)? * layer.up_proj.forward(&h)?)?)?;
        x + layer.post_feedforward_layernorm.forward(&mlp)?
    }

    /// Incremental decoding of one sequence: `input_ids` `[1, n]` continue the `cache.len()`
    /// tokens already seen; returns their final hidden states (after the last norm) `[1, n,
    /// hidden]` and extends the cache.
    pub fn forward_cached(
        &self,
        input_ids: &Tensor,
        cache: &mut GemmaKvCache,
    ) -> crate::Result<Tensor> {
        let (b, n) = input_ids.dims2()?;
        if b != 1 || n == 0 {
            return Err(crate::error::bad_shape(
                "token ids",
                input_ids.dims(),
                "[1, n] with n >= 1",
            ));
        }
        if cache.layers.len() != self.layers.len() {
            return Err(crate::Error::InvalidInput(format!(
                "the cache has {} layers, the model {}",
                cache.layers.len(),
                self.layers.len()
            )));
        }
        let mut x = self.embed(input_ids)?;
        let dtype = x.dtype();
        let device = x.device().clone();
        let start = cache.len;
        let total = start + n;
        // every cached key is a token: only the causal and sliding limits mask, and a mask that
        // masks nothing is dropped (a single query then takes the fused kernel on Metal)
        let keep = vec![1f32; total];
        let mask = |window: Option<usize>| -> Result<Option<Tensor>> {
            let mut m = Vec::with_capacity(n * total);
            push_mask_rows(&mut m, &keep, start, n, window, masked_bias(dtype));
            if m.iter().all(|&x| x == 0.0) {
                return Ok(None);
            }
            Tensor::from_vec(m, (1, 1, n, total), &device).map(Some)
        };
        let full_mask = mask(None)?;
        let sliding_mask = mask(Some(self.cfg.sliding_window))?;
        let rope_full = self.rope(start, n, false, dtype, &device)?;
        let rope_sliding = self.rope(start, n, true, dtype, &device)?;
        self.layers.for_each(|i, layer| {
            let (rope, mask) = if layer.sliding {
                (&rope_sliding, &sliding_mask)
            } else {
                (&rope_full, &full_mask)
            };
            let slot = Some(&mut cache.layers[i]);
            x = self.layer_forward(layer, &x, (&rope.0, &rope.1), mask.as_ref(), slot)?;
            Ok(())
        })?;
        cache.len = total;
        Ok(self.norm.forward(&x)?)
    }

    /// Language-model logits (f32) of final hidden states `[.., hidden]`: the tied embedding
    /// matrix, then the optional `tanh` cap.
    pub fn logits(&self, hidden: &Tensor) -> crate::Result<Tensor> {
        let w = self.embed_tokens.embeddings().to_dtype(DType::F32)?;
        let dims = hidden.dims().to_vec();
        let h = *dims.last().unwrap_or(&0);
        let flat = hidden.to_dtype(DType::F32)?.reshape(((), h))?;
        let mut logits = flat.matmul(&w.t()?)?;
        if let Some(cap) = self.cfg.final_logit_softcapping {
            logits = ((logits / cap)?.tanh()? * cap)?;
        }
        let mut out = dims;
        *out.last_mut().expect("rank >= 1") = self.cfg.vocab_size;
        Ok(logits.reshape(out)?)
    }

    /// Token embeddings scaled by `√hidden` (rounded to the weight dtype); ids checked against the
    /// vocabulary.
    fn embed(&self, input_ids: &Tensor) -> crate::Result<Tensor> {
        let ids = input_ids.to_dtype(DType::U32)?;
        let max_id = ids.max_all()?.to_scalar::<u32>()? as usize;
        if max_id >= self.cfg.vocab_size {
            return Err(crate::Error::InvalidInput(format!(
                "token id {max_id} is outside the vocabulary ({} tokens)",
                self.cfg.vocab_size
            )));
        }
        let emb = self.embed_tokens.forward(&ids)?;
        let scale = Tensor::new((self.cfg.hidden_size as f64).sqrt() as f32, emb.device())?
            .to_dtype(emb.dtype())?;
        Ok(emb.broadcast_mul(&scale)?)
    }

    /// A fresh cache for [`Self::forward_cached`].
    pub fn new_cache(&self) -> GemmaKvCache {
        GemmaKvCache {
            layers: vec![None; self.layers.len()],
            len: 0,
        }
    }

    /// Additive masks `[B, 1, T, T]` (0 = attend, [`masked_bias`] = masked) for full and sliding
    /// layers, in f32 (f64 for an f64 model).
    fn masks(&self, attention_mask: &Tensor, dtype: DType) -> Result<(Tensor, Tensor)> {
        let (b, t) = attention_mask.dims2()?;
        let keep: Vec<Vec<f32>> = attention_mask.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        let masked = masked_bias(dtype);
        let window = Some(self.cfg.sliding_window);
        let mut full = Vec::with_capacity(b * t * t);
        let mut sliding = Vec::with_capacity(b * t * t);
        for row in &keep {
            push_mask_rows(&mut full, row, 0, t, None, masked);
            push_mask_rows(&mut sliding, row, 0, t, window, masked);
        }
        let dev = attention_mask.device();
        let mk = |v: Vec<f32>| -> Result<Tensor> {
            Tensor::from_vec(v, (b, 1, t, t), dev)?.to_dtype(if dtype == DType::F64 {
                DType::F64
            } else {
                DType::F32
            })
        };
        Ok((mk(full)?, mk(sliding)?))
    }

    /// `input_ids` `[B, T]`, `attention_mask` `[B, T]` (1 = token) -> `num_hidden_layers + 1`
    /// hidden states `[B, T, hidden]`.
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
        let dtype = x.dtype();
        let device = x.device().clone();
        let (full_mask, sliding_mask) = self.masks(attention_mask, dtype)?;
        let rope_full = self.rope(0, t, false, dtype, &device)?;
        let rope_sliding = self.rope(0, t, true, dtype, &device)?;
        let mut states = Vec::with_capacity(self.layers.len() + 1);
        states.push(x.clone());
        self.layers.for_each(|_, layer| {
            let (cos, sin) = if layer.sliding {
                &rope_sliding
            } else {
                &rope_full
            };
            let mask = if layer.sliding {
                &sliding_mask
            } else {
                &full_mask
            };
            x = self.layer_forward(layer, &x, (cos, sin), Some(mask), None)?;
            states.push(x.clone());
            Ok(())
        })?;
        Ok(final_norm_last(states, &self.norm)?)
    }
}

/// The hidden states as the encoders return them: the last one after the final norm.
pub(super) fn final_norm_last(mut states: Vec<Tensor>, norm: &dyn Module) -> Result<Vec<Tensor>> {
    let last = states.pop().expect("at least the embeddings");
    states.push(norm.forward(&last)?);
    Ok(states)
}

/// Gemma checkpoint keys -> [`Gemma3TextModel`] keys: the language model's weights under
/// `language_model.model.` (the Hugging Face layout of `google/gemma-3-*`) or
/// `model.language_model.` (newer exports); the vision tower and projector are not read.
pub fn gemma_llm_key_ops() -> crate::loader::SDOps {
    crate::loader::SDOps::new("GEMMA_LLM_KEY_OPS")
        .with_matching("language_model.model.", "")
        .with_replacement("language_model.model.", "")
        .with_matching("model.language_model.", "")
        .with_replacement("model.language_model.", "")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A left-padded prompt: the first two of five positions are padding.
    const KEEP: [f32; 5] = [0., 0., 1., 1., 1.];

    #[test]
    fn mask_rows_are_causal_padded_and_windowed() {
        let x = -1.0;
        let mut m = Vec::new();
        push_mask_rows(&mut m, &KEEP, 0, 5, Some(2), x);
        let want = [
            [x, x, x, x, x],
            [x, x, x, x, x],
            [x, x, 0., x, x],
            [x, x, 0., 0., x],
            [x, x, x, 0., 0.],
        ];
        assert_eq!(m, want.concat());
        // decoding positions 3 and 4 of an unpadded sequence
        let mut m = Vec::new();
        push_mask_rows(&mut m, &[1.; 5], 3, 2, None, x);
        assert_eq!(m, [[0., 0., 0., 0., x], [0.; 5]].concat());
    }

    #[test]
    fn masked_bias_is_the_dtype_minimum_within_f32() {
        // f32 (and f64) models keep the bias they always had
        assert_eq!(masked_bias(DType::F32), f32::MIN);
        assert_eq!(masked_bias(DType::F64), f32::MIN);
        assert_eq!(masked_bias(DType::F16), -65504.0);
        assert_eq!(masked_bias(DType::BF16) as f64, finfo(DType::BF16).0);
    }

    /// The padding rows of a left-padded prompt mask every key; cast to a half dtype (as the
    /// fused Metal path does) the mask stays finite and those rows stay finite through attention.
    #[test]
    fn fully_masked_padding_rows_stay_finite_in_half_dtypes() -> Result<()> {
        let dev = Device::Cpu;
        for dtype in [DType::BF16, DType::F16] {
            let mut m = Vec::new();
            push_mask_rows(&mut m, &KEEP, 0, 5, None, masked_bias(dtype));
            let mask = Tensor::from_vec(m, (1, 1, 5, 5), &dev)?.to_dtype(dtype)?;
            let values = mask.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            assert!(values.iter().all(|x| x.is_finite()), "{dtype:?}");
            let qkv = || Tensor::randn(0f32, 1., (1, 2, 5, 4), &dev)?.to_dtype(dtype);
            let (q, k, v) = (qkv()?, qkv()?, qkv()?);
            let out = scaled_dot_product_attention_with_scale(&q, &k, &v, Some(&mask), 0.5)?;
            let out = out.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            assert!(out.iter().all(|x| x.is_finite()), "{dtype:?}: {out:?}");
        }
        Ok(())
    }
}

//! Port of `ltx_core/model/transformer/attention.py`: multi-head attention with q/k RMSNorm,
//! rotary embeddings, additive masks, STG value pass-through and LTX-2.3's per-head gates.
//!
//! The score matrix is never materialised whole: queries are processed in chunks so one chunk's
//! scores stay under [`SCORE_BUDGET_BYTES`].

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::VarBuilder;

use super::rope::{apply_rotary_emb, RopeFreqs};
use super::text_kv_cache::{ContextKey, TextKvCache};
use crate::quantization::{Linear, LinearSource};

/// Upper bound on the f32 score slice one attention chunk materialises (B·H·rows·keys·4 bytes).
pub const SCORE_BUDGET_BYTES: usize = 256 << 20;

/// `torch.nn.functional.rms_norm` over the last dim: computed in f32, cast back to the input
/// dtype, then scaled by `weight` (if any). One pass on the CPU in f32.
pub fn rms_norm(x: &Tensor, weight: Option<&Tensor>, eps: f64) -> Result<Tensor> {
    if crate::kernels::rows::usable(x) && weight.is_none_or(|w| w.dtype() == DType::F32) {
        return crate::kernels::rows::rms_norm(x, weight, eps);
    }
    let dtype = x.dtype();
    let xf = x.to_dtype(DType::F32)?;
    let inv = (xf.sqr()?.mean_keepdim(D::Minus1)? + eps)?
        .sqrt()?
        .recip()?;
    let y = xf.broadcast_mul(&inv)?.to_dtype(dtype)?;
    match weight {
        Some(w) => y.broadcast_mul(w),
        None => Ok(y),
    }
}

/// `x` `[B, Hk, T, d]` with each head repeated for `heads / Hk` consecutive query heads.
pub fn repeat_kv(x: &Tensor, heads: usize) -> Result<Tensor> {
    let (b, hk, t, d) = x.dims4()?;
    if hk == heads {
        return Ok(x.clone());
    }
    if hk == 0 || heads % hk != 0 {
        candle_core::bail!("{heads} query heads cannot share {hk} key/value heads")
    }
    x.unsqueeze(2)?
        .broadcast_as((b, hk, heads / hk, t, d))?
        .reshape((b, heads, t, d))
}

/// Softmax attention of `q` `[B, H, Tq, d]` over `k`, `v` `[B, Hk, Tk, d]` (grouped-query
/// attention when `Hk` divides `H`: key head `h / (H / Hk)` serves query head `h`) with an optional
/// additive `mask` broadcastable to `[B, H, Tq, Tk]`; scale `1/√d`; scores and softmax in f32;
/// queries processed in chunks bounded by [`SCORE_BUDGET_BYTES`].
pub fn scaled_dot_product_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
) -> Result<Tensor> {
    let d = q.dim(3)?;
    scaled_dot_product_attention_with_scale(q, k, v, mask, 1.0 / (d as f64).sqrt())
}

/// [`scaled_dot_product_attention`] with an explicit score scale.
pub fn scaled_dot_product_attention_with_scale(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    scale: f64,
) -> Result<Tensor> {
    let (b, h, tq, d) = q.dims4()?;
    let tk = k.dim(2)?;
    if crate::kernels::attention::usable(q, k, v, mask) {
        return crate::kernels::attention::attention(q, k, v, mask, scale as f32)?.transpose(1, 2);
    }
    let (k, v) = (&repeat_kv(k, h)?, &repeat_kv(v, h)?);
    if fused_sdpa_usable(q.device().is_metal(), d, tq, tk, mask.is_some()) {
        let mask = match mask {
            Some(m) => Some(fused_sdpa_mask(m, q.dtype(), (b, h, tq, tk))?),
            None => None,
        };
        let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
        return candle_nn::ops::sdpa(&q, &k, &v, mask.as_ref(), false, scale as f32, 1.0);
    }
    let rows = SCORE_BUDGET_BYTES / (b * h * tk.max(1) * 4);
    attention_in_chunks(q, k, v, mask, rows, scale)
}

/// `(torch.finfo(dtype).min, torch.finfo(dtype).tiny)`: the most negative finite value and the
/// smallest positive normal of a float dtype (f32's for the others). Additive masks use `min`
/// rather than `-inf`, which a fully masked row would turn into NaN.
pub fn finfo(dtype: DType) -> (f64, f64) {
    match dtype {
        DType::F16 => (half::f16::MIN.to_f64(), half::f16::MIN_POSITIVE.to_f64()),
        DType::BF16 => (half::bf16::MIN.to_f64(), half::bf16::MIN_POSITIVE.to_f64()),
        DType::F64 => (f64::MIN, f64::MIN_POSITIVE),
        _ => (f32::MIN as f64, f32::MIN_POSITIVE as f64),
    }
}

/// Head sizes Candle's fused Metal SDPA has kernels for (512 only outside f32: left out).
const FUSED_SDPA_HEAD_DIMS: [usize; 7] = [32, 64, 72, 80, 96, 128, 256];

/// The lowest mask value handed to the fused Metal kernel. It adds `log2(e)·mask` to f32 scores,
/// so a value below `f32::MIN / log2(e)` (a bf16 or f32 `finfo.min`) becomes `-inf` there and a
/// fully masked row divides 0 by 0; from this floor on `exp` is 0 all the same.
const FUSED_SDPA_MASK_FLOOR: f64 = -1e38;

/// Whether Candle's fused Metal SDPA (`candle_nn::ops::sdpa`) computes this attention call
/// exactly: on Metal, for its head sizes, with at least one key. A single query goes to its
/// vector kernel, which ignores the mask; its full kernel rejects a mask with more queries than
/// keys. Anything else takes the chunked softmax path.
pub fn fused_sdpa_usable(
    device_is_metal: bool,
    head_dim: usize,
    q_len: usize,
    k_len: usize,
    has_mask: bool,
) -> bool {
    let shape_ok = match (q_len, has_mask) {
        (0, _) | (1, true) => false,
        (1, false) => true,
        (_, true) => q_len <= k_len,
        (_, false) => true,
    };
    device_is_metal && FUSED_SDPA_HEAD_DIMS.contains(&head_dim) && k_len > 0 && shape_ok
}

/// An additive `mask` broadcastable to `shape` `[B, H, Tq, Tk]` as the fused kernel takes it: in
/// `dtype`, no lower than [`FUSED_SDPA_MASK_FLOOR`] (nor than `dtype`'s minimum: no `-inf`), and a
/// stride-0 view of `shape` over one copy of its distinct values (the kernel reads the batch,
/// head and query strides; the copy is contiguous from offset 0, as the kernel needs).
fn fused_sdpa_mask(
    mask: &Tensor,
    dtype: DType,
    shape: (usize, usize, usize, usize),
) -> Result<Tensor> {
    // a mask that is itself a broadcast view is reduced to its distinct values first
    let mut m = mask.clone();
    for dim in 0..m.rank() {
        if m.stride()[dim] == 0 && m.dim(dim)? > 1 {
            m = m.narrow(dim, 0, 1)?;
        }
    }
    let floor = finfo(dtype).0.max(FUSED_SDPA_MASK_FLOOR);
    // `maximum` writes a fresh contiguous tensor
    m.to_dtype(dtype)?.maximum(floor)?.broadcast_as(shape)
}

/// [`scaled_dot_product_attention`] with at most `rows` queries per chunk.
fn attention_in_chunks(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    rows: usize,
    scale: f64,
) -> Result<Tensor> {
    let (b, h, tq, d) = q.dims4()?;
    let dtype = q.dtype();
    let kt = k.to_dtype(DType::F32)?.transpose(2, 3)?.contiguous()?;
    let vf = v.to_dtype(DType::F32)?.contiguous()?;
    let mask = match mask {
        Some(m) => Some(m.to_dtype(DType::F32)?),
        None => None,
    };
    let rows = rows.clamp(1, tq.max(1));
    let mut outs = Vec::with_capacity(tq.div_ceil(rows));
    let mut start = 0;
    while start < tq {
        let n = rows.min(tq - start);
        let qc = q.narrow(2, start, n)?.to_dtype(DType::F32)?.contiguous()?;
        let mut s = (qc.matmul(&kt)? * scale)?;
        if let Some(m) = &mask {
            let mc = if m.dim(2)? == 1 {
                m.clone()
            } else {
                m.narrow(2, start, n)?
            };
            s = s.broadcast_add(&mc)?;
        }
        let p = candle_nn::ops::softmax_last_dim(&s)?;
        outs.push(p.matmul(&vf)?);
        start += n;
    }
    let out = if outs.len() == 1 {
        outs.pop().expect("one chunk")
    } else {
        Tensor::cat(&outs, 2)?
    };
    debug_assert_eq!(out.dims(), &[b, h, tq, d]);
    out.to_dtype(dtype)
}

/// One attention layer (`attn1`, `attn2`, `audio_to_video_attn`, ...).
#[derive(Clone, Debug)]
pub struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    q_norm: Tensor,
    k_norm: Tensor,
    to_gate_logits: Option<Linear>,
    heads: usize,
    dim_head: usize,
    eps: f64,
    /// Keys and values per context, for a step-invariant text cross-attention.
    kv_cache: Option<TextKvCache>,
}

/// Inputs of [`Attention::forward`] besides the query stream.
#[derive(Clone, Copy, Default)]
pub struct AttentionInputs<'a> {
    /// Keys/values source (`None`: self-attention).
    pub context: Option<&'a Tensor>,
    /// Additive mask broadcastable to `[B, H, Tq, Tk]`.
    pub mask: Option<&'a Tensor>,
    /// Rotary embedding of the queries (and of the keys when `k_pe` is `None`).
    pub pe: Option<&'a RopeFreqs>,
    pub k_pe: Option<&'a RopeFreqs>,
    /// Per-sample blend `[B, 1, 1]`: 1 keeps attention, 0 passes the values through.
    pub perturbation_mask: Option<&'a Tensor>,
    /// Every sample is perturbed: skip the query/key path entirely.
    pub all_perturbed: bool,
    /// Identity of `context` across steps: with a K/V cache, its keys and values are computed
    /// once (`None`: always computed).
    pub context_key: Option<&'a ContextKey>,
}

impl Attention {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        query_dim: usize,
        context_dim: Option<usize>,
        heads: usize,
        dim_head: usize,
        norm_eps: f64,
        apply_gated_attention: bool,
        vb: VarBuilder,
        linears: &LinearSource,
    ) -> Result<Self> {
        let inner = heads * dim_head;
        let context_dim = context_dim.unwrap_or(query_dim);
        let linear = |i, o, name: &str| linears.linear(i, o, true, vb.pp(name));
        Ok(Self {
            to_q: linear(query_dim, inner, "to_q")?,
            to_k: linear(context_dim, inner, "to_k")?,
            to_v: linear(context_dim, inner, "to_v")?,
            to_out: linear(inner, query_dim, "to_out.0")?,
            q_norm: vb.get(inner, "q_norm.weight")?,
            k_norm: vb.get(inner, "k_norm.weight")?,
            to_gate_logits: if apply_gated_attention {
                Some(linear(query_dim, heads, "to_gate_logits")?)
            } else {
                None
            },
            heads,
            dim_head,
            eps: norm_eps,
            kv_cache: None,
        })
    }

    /// This layer with a K/V cache: for a cross-attention whose context is the same at every
    /// step (the caller says so by passing [`AttentionInputs::context_key`]).
    pub fn with_kv_cache(mut self) -> Self {
        self.kv_cache = Some(TextKvCache::default());
        self
    }

    /// The K/V cache, where this layer has one.
    pub fn kv_cache(&self) -> Option<&TextKvCache> {
        self.kv_cache.as_ref()
    }

    /// (normed keys, values) of `context`: from the cache for a keyed, unrotated context.
    fn keys_values(&self, context: &Tensor, inputs: &AttentionInputs) -> Result<(Tensor, Tensor)> {
        let compute = || -> Result<(Tensor, Tensor)> {
            let k = rms_norm(&self.to_k.forward(context)?, Some(&self.k_norm), self.eps)?;
            Ok((k, self.to_v.forward(context)?))
        };
        match (&self.kv_cache, inputs.context_key) {
            (Some(cache), Some(key)) if inputs.context.is_some() && inputs.pe.is_none() => {
                cache.get_or_insert(key, compute)
            }
            _ => compute(),
        }
    }

    pub fn forward(&self, x: &Tensor, inputs: AttentionInputs) -> Result<Tensor> {
        let context = inputs.context.unwrap_or(x);
        let out = if inputs.all_perturbed {
            self.to_v.forward(context)?
        } else {
            let q = rms_norm(&self.to_q.forward(x)?, Some(&self.q_norm), self.eps)?;
            let (k, v) = self.keys_values(context, &inputs)?;
            let (q, k) = match inputs.pe {
                Some(pe) => (
                    apply_rotary_emb(&q, pe)?,
                    apply_rotary_emb(&k, inputs.k_pe.unwrap_or(pe))?,
                ),
                None => (q, k),
            };
            let out = self.attend(&q, &k, &v, inputs.mask)?;
            match inputs.perturbation_mask {
                Some(m) => {
                    let keep = out.broadcast_mul(m)?;
                    let pass = v.broadcast_mul(&m.affine(-1.0, 1.0)?)?;
                    (keep + pass)?
                }
                None => out,
            }
        };
        let out = match &self.to_gate_logits {
            Some(gate) => {
                let (b, t, _) = out.dims3()?;
                let gates = (candle_nn::ops::sigmoid(&gate.forward(x)?)? * 2.0)?;
                out.reshape((b, t, self.heads, self.dim_head))?
                    .broadcast_mul(&gates.unsqueeze(3)?)?
                    .reshape((b, t, self.heads * self.dim_head))?
            }
            None => out,
        };
        self.to_out.forward(&out)
    }

    /// `[B, T, H·d]` tensors -> per-head attention -> `[B, Tq, H·d]`.
    fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (b, tq, _) = q.dims3()?;
        // strided views: the CPU kernel reads them in place, other paths copy what they need
        let heads = |x: &Tensor| -> Result<Tensor> {
            let t = x.dim(1)?;
            x.reshape((b, t, self.heads, self.dim_head))?
                .transpose(1, 2)
        };
        let out = scaled_dot_product_attention(&heads(q)?, &heads(k)?, &heads(v)?, mask)?;
        out.transpose(1, 2)?
            .contiguous()?
            .reshape((b, tq, self.heads * self.dim_head))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn chunked_attention_matches_one_shot() -> Result<()> {
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1., (1, 2, 7, 4), &dev)?;
        let k = Tensor::randn(0f32, 1., (1, 2, 5, 4), &dev)?;
        let v = Tensor::randn(0f32, 1., (1, 2, 5, 4), &dev)?;
        let mask = Tensor::randn(0f32, 1., (1, 1, 7, 5), &dev)?;
        // reference: softmax(q k^T / 2 + mask) v
        let s = (q.matmul(&k.transpose(2, 3)?)? * 0.5)?.broadcast_add(&mask)?;
        let want = candle_nn::ops::softmax_last_dim(&s)?.matmul(&v)?;
        for rows in [1, 2, 3, 7, 100] {
            let got = attention_in_chunks(&q, &k, &v, Some(&mask), rows, 0.5)?;
            let diff = (got - &want)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff < 1e-6, "rows {rows}: {diff}");
        }
        let got = scaled_dot_product_attention(&q, &k, &v, Some(&mask))?;
        assert!((got - &want)?.abs()?.max_all()?.to_scalar::<f32>()? < 1e-6);
        Ok(())
    }

    #[test]
    fn finfo_min_is_finite_in_its_dtype() -> Result<()> {
        let dev = Device::Cpu;
        for dtype in [DType::BF16, DType::F16, DType::F32] {
            let (min, tiny) = finfo(dtype);
            let back = Tensor::new(&[min, tiny], &dev)?
                .to_dtype(dtype)?
                .to_dtype(DType::F64)?
                .to_vec1::<f64>()?;
            assert_eq!(back, [min, tiny], "{dtype:?}");
        }
        // what the mask builders used before: -inf once cast to a half type
        for dtype in [DType::BF16, DType::F16] {
            let cast = Tensor::new(f32::MIN, &dev)?.to_dtype(dtype)?;
            assert!(cast.to_dtype(DType::F32)?.to_scalar::<f32>()?.is_infinite());
        }
        Ok(())
    }

    #[test]
    fn fused_sdpa_routing() {
        // off Metal, a head size without a kernel, no keys: never
        assert!(!fused_sdpa_usable(false, 64, 16, 16, false));
        assert!(!fused_sdpa_usable(true, 48, 16, 16, false));
        assert!(!fused_sdpa_usable(true, 64, 16, 0, false));
        assert!(!fused_sdpa_usable(true, 64, 0, 16, false));
        // one query: the vector kernel, which ignores a mask (Gemma's sliding-window decoding)
        assert!(fused_sdpa_usable(true, 256, 1, 900, false));
        assert!(!fused_sdpa_usable(true, 256, 1, 900, true));
        // several queries: a mask needs no more queries than keys
        assert!(fused_sdpa_usable(true, 128, 64, 64, true));
        assert!(fused_sdpa_usable(true, 128, 8, 64, true));
        assert!(!fused_sdpa_usable(true, 128, 65, 64, true));
        assert!(fused_sdpa_usable(true, 128, 65, 64, false));
    }

    /// `[2, 1, 2, 3]`: f32 minimums, one `-inf`, a fully masked row (batch 1, query 0).
    fn test_mask(with_inf: bool) -> Result<Tensor> {
        let (m, i) = (
            f32::MIN,
            if with_inf {
                f32::NEG_INFINITY
            } else {
                f32::MIN
            },
        );
        Tensor::new(
            &[[[[0f32, m, i], [0.5, 0., m]]], [[[m, m, i], [0., -1., 0.]]]],
            &Device::Cpu,
        )
    }

    #[test]
    fn fused_sdpa_mask_is_finite_and_a_broadcast_view() -> Result<()> {
        let shape = (2, 4, 2, 3);
        let raw = test_mask(true)?;
        // also when the caller hands over an expanded view: never materialised
        for mask in [raw.clone(), raw.broadcast_as(shape)?] {
            for dtype in [DType::BF16, DType::F16, DType::F32] {
                let m = fused_sdpa_mask(&mask, dtype, shape)?;
                assert_eq!((m.dims(), m.dtype()), (&[2, 4, 2, 3][..], dtype));
                assert_eq!(m.stride(), &[6, 0, 3, 1], "{dtype:?}");
                assert_eq!(m.layout().start_offset(), 0);
                // the kernel adds log2(e)·mask to f32 scores: that stays finite
                let added = (m.to_dtype(DType::F32)? * std::f64::consts::LOG2_E)?
                    .flatten_all()?
                    .to_vec1::<f32>()?;
                assert!(added.iter().all(|x| x.is_finite()), "{dtype:?}: {added:?}");
                let kept = m.to_dtype(DType::F32)?.get(0)?.get(0)?.get(1)?;
                assert_eq!(kept.narrow(0, 0, 2)?.to_vec1::<f32>()?, [0.5, 0.]);
            }
        }
        Ok(())
    }

    #[test]
    fn fused_sdpa_mask_attends_like_the_original() -> Result<()> {
        let dev = Device::Cpu;
        let (q, k, v) = (
            Tensor::randn(0f32, 1., (2, 4, 2, 8), &dev)?,
            Tensor::randn(0f32, 1., (2, 4, 3, 8), &dev)?,
            Tensor::randn(0f32, 1., (2, 4, 3, 8), &dev)?,
        );
        let raw = test_mask(false)?;
        let want = attention_in_chunks(&q, &k, &v, Some(&raw), 2, 0.5)?;
        let fused = fused_sdpa_mask(&raw, DType::F32, (2, 4, 2, 3))?;
        let got = attention_in_chunks(&q, &k, &v, Some(&fused), 2, 0.5)?;
        assert!(got
            .flatten_all()?
            .to_vec1::<f32>()?
            .iter()
            .all(|x| x.is_finite()));
        assert_eq!(
            (got - want)?.abs()?.max_all()?.to_scalar::<f32>()?,
            0.0,
            "the floor changes no probability"
        );
        Ok(())
    }
}

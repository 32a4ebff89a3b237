//! Port of `ltx_core/model/transformer/transformer_args.py`: turns a [`Modality`] into what the
//! transformer blocks consume (projected tokens, per-token modulation, RoPE, masks, and the
//! cross-modal AdaLN inputs driven by the other stream's sigma).

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::Linear;

use super::adaln::AdaLayerNormSingle;
use super::attention::finfo;
use super::modality::Modality;
use super::rope::{precompute_freqs_cis, RopeFreqs, RopeSpec};
use super::text_kv_cache::ContextKey;
use super::text_projection::PixArtAlphaTextProjection;

/// One stream's block inputs.
#[derive(Clone, Debug)]
pub struct TransformerArgs {
    /// Hidden tokens `[B, T, D]`.
    pub x: Tensor,
    /// Text context `[B, S, D]`.
    pub context: Tensor,
    /// Additive text mask broadcastable to `[B, H, T, S]`.
    pub context_mask: Option<Tensor>,
    /// Block modulation `[B, T or 1, k·D]`.
    pub timesteps: Tensor,
    /// Embedded timestep `[B, T or 1, D]` (output modulation).
    pub embedded_timestep: Tensor,
    pub positional_embeddings: RopeFreqs,
    /// Time-only RoPE of the audio-video cross-attention.
    pub cross_positional_embeddings: Option<RopeFreqs>,
    /// `[B, 1, 4·D]` from the other stream's sigma.
    pub cross_scale_shift_timestep: Option<Tensor>,
    /// `[B, 1, D]` from the other stream's sigma.
    pub cross_gate_timestep: Option<Tensor>,
    pub enabled: bool,
    /// Prompt AdaLN modulation `[B, 1, 2·D]` (cross-attention AdaLN only).
    pub prompt_timestep: Option<Tensor>,
    /// Additive self-attention bias `[B, 1, T, T]`.
    pub self_attention_mask: Option<Tensor>,
    /// Identity of the text context across steps ([`Modality::context_key`]).
    pub context_key: Option<ContextKey>,
}

/// `x + (mask > 0)·embedding`: the keyframe marker on the tokens the `[B, T, 1]` mask marks
/// (`apply_keyframes_absolute_embedding`), in `x`'s dtype.
fn add_keyframes_embedding(x: &Tensor, mask: &Tensor, embedding: &Tensor) -> Result<Tensor> {
    let (b, t, d) = x.dims3()?;
    if mask.dims() != [b, t, 1] || embedding.dims() != [1, d] {
        return Err(candle_core::Error::Msg(format!(
            "keyframes mask {:?} / embedding {:?} do not fit tokens {:?} (want [{b}, {t}, 1] / \
             [1, {d}])",
            mask.dims(),
            embedding.dims(),
            x.dims()
        )));
    }
    let marked = mask.gt(0.0)?.to_dtype(x.dtype())?;
    let embedding = embedding.to_dtype(x.dtype())?.unsqueeze(0)?;
    x + marked.broadcast_mul(&embedding)?
}

/// The modules and settings of one stream's preprocessing.
#[derive(Clone, Debug)]
pub struct TransformerArgsPreprocessor {
    pub patchify_proj: Linear,
    pub adaln: AdaLayerNormSingle,
    pub inner_dim: usize,
    pub rope: RopeSpec,
    pub timestep_scale_multiplier: f64,
    pub caption_projection: Option<PixArtAlphaTextProjection>,
    pub prompt_adaln: Option<AdaLayerNormSingle>,
    /// Present in audio-video models.
    pub cross: Option<CrossModalPreprocessor>,
    /// The learned keyframe marker `[1, D]` (video stream of models with
    /// `use_keyframes_abs_pos_embedding`).
    pub keyframes_embedding: Option<Tensor>,
}

/// The audio-video extras of [`TransformerArgsPreprocessor`] (the reference's
/// `MultiModalTransformerArgsPreprocessor`).
#[derive(Clone, Debug)]
pub struct CrossModalPreprocessor {
    pub cross_scale_shift_adaln: AdaLayerNormSingle,
    pub cross_gate_adaln: AdaLayerNormSingle,
    pub cross_pe_max_pos: usize,
    /// Width of the audio-video attention (and of its RoPE).
    pub audio_cross_attention_dim: usize,
    pub av_ca_timestep_scale_multiplier: f64,
}

/// `sigma` (0-d, `[1]` or `[B]`) as `[B]` f32.
fn sigma_per_batch(sigma: &Tensor, batch: usize) -> Result<Tensor> {
    let s = sigma.flatten_all()?.to_dtype(DType::F32)?;
    match s.dim(0)? {
        n if n == batch => Ok(s),
        1 => s.broadcast_as(batch)?.contiguous(),
        n => candle_core::bail!("sigma has {n} values for a batch of {batch}"),
    }
}

impl TransformerArgsPreprocessor {
    /// Scaled timestep `[B, ...]` -> (modulation `[B, N, k·D]`, embedded `[B, N, D]`).
    fn prepare_timestep(
        &self,
        timestep: &Tensor,
        adaln: &AdaLayerNormSingle,
        batch: usize,
        dtype: DType,
    ) -> Result<(Tensor, Tensor)> {
        let scaled = (timestep.to_dtype(DType::F32)? * self.timestep_scale_multiplier)?;
        let flat = scaled.flatten_all()?;
        let values = flat.to_vec1::<f32>()?;
        let per_sample = values.len() / batch.max(1);
        // The embedding is a function of the value alone: run the MLP once per distinct value
        // (a generation has one or two: the sigma and 0 for conditioned tokens) instead of once
        // per token, and keep a [B, 1, ·] broadcast where each sample has one value.
        let uniform = per_sample > 0
            && values.len() == batch * per_sample
            && values
                .chunks(per_sample)
                .all(|c| c.iter().all(|v| v.to_bits() == c[0].to_bits()));
        if uniform {
            let firsts = scaled
                .reshape((batch, per_sample))?
                .narrow(1, 0, 1)?
                .flatten_all()?;
            let (m, e) = adaln.forward(&firsts, dtype)?;
            let (km, d) = (m.dim(1)?, e.dim(1)?);
            return Ok((m.reshape((batch, 1, km))?, e.reshape((batch, 1, d))?));
        }
        let mut distinct: Vec<u32> = values.iter().map(|v| v.to_bits()).collect();
        distinct.sort_unstable();
        distinct.dedup();
        let (m, e) = if distinct.len() < values.len() {
            let index: Vec<u32> = values
                .iter()
                .map(|v| distinct.binary_search(&v.to_bits()).expect("listed") as u32)
                .collect();
            let unique: Vec<f32> = distinct.iter().map(|&b| f32::from_bits(b)).collect();
            let device = timestep.device();
            let (m, e) = adaln.forward(&Tensor::new(unique.as_slice(), device)?, dtype)?;
            let index = Tensor::new(index.as_slice(), device)?;
            (m.index_select(&index, 0)?, e.index_select(&index, 0)?)
        } else {
            adaln.forward(&flat, dtype)?
        };
        let (km, d) = (m.dim(1)?, e.dim(1)?);
        Ok((m.reshape((batch, (), km))?, e.reshape((batch, (), d))?))
    }

    /// Self-attention weights `[B, T, T]` in `[0, 1]` -> additive bias `[B, 1, T, T]`:
    /// `log(m)` where `m > 0`, the dtype's most negative value elsewhere.
    fn self_attention_bias(mask: &Tensor, dtype: DType) -> Result<Tensor> {
        let (min, tiny) = finfo(dtype);
        let tiny_t = Tensor::new(tiny, mask.device())?.to_dtype(mask.dtype())?;
        let log = mask.broadcast_maximum(&tiny_t)?.log()?.to_dtype(dtype)?;
        let floor = Tensor::new(min, mask.device())?
            .to_dtype(dtype)?
            .broadcast_as(log.shape())?;
        let zero = Tensor::zeros((), mask.dtype(), mask.device())?;
        let positive = mask.broadcast_gt(&zero)?;
        positive.where_cond(&log, &floor)?.unsqueeze(1)
    }

    /// A text mask: integer `[B, S]` (1 = keep) -> `(m − 1)·finfo.max` `[B, 1, 1, S]`; a float
    /// mask is an additive bias already.
    fn context_bias(mask: &Tensor, dtype: DType) -> Result<Tensor> {
        if mask.dtype().is_float() {
            return match mask.rank() {
                2 => mask.unsqueeze(0)?.unsqueeze(0),
                3 => mask.unsqueeze(1),
                _ => Ok(mask.clone()),
            };
        }
        let (b, s) = (mask.dim(0)?, mask.dim(mask.rank() - 1)?);
        let max = -finfo(dtype).0;
        let m = mask
            .to_dtype(DType::F32)?
            .affine(1.0, -1.0)?
            .to_dtype(dtype)?;
        let m = m.reshape((b, 1, (), s))?;
        m.broadcast_mul(&Tensor::new(max, mask.device())?.to_dtype(dtype)?)
    }

    /// `Modality` -> block inputs; `cross` is the other stream (audio-video models).
    pub fn prepare(
        &self,
        modality: &Modality,
        cross: Option<&Modality>,
    ) -> Result<TransformerArgs> {
        let dtype = modality.latent.dtype();
        let x = self.patchify_proj.forward(&modality.latent)?;
        let x = match (&self.keyframes_embedding, &modality.keyframes_mask) {
            (Some(embedding), Some(mask)) => add_keyframes_embedding(&x, mask, embedding)?,
            _ => x,
        };
        let batch = x.dim(0)?;
        let (timesteps, embedded_timestep) =
            self.prepare_timestep(&modality.timesteps, &self.adaln, batch, dtype)?;
        let prompt_timestep = match &self.prompt_adaln {
            Some(adaln) => {
                let sigma = sigma_per_batch(&modality.sigma, batch)?;
                Some(self.prepare_timestep(&sigma, adaln, batch, dtype)?.0)
            }
            None => None,
        };
        let context = match &self.caption_projection {
            Some(p) => p.forward(&modality.context)?,
            None => modality.context.clone(),
        };
        let context = context.reshape((batch, (), x.dim(2)?))?;
        let context_mask = match &modality.context_mask {
            Some(m) => Some(Self::context_bias(m, dtype)?),
            None => None,
        };
        let positional_embeddings =
            precompute_freqs_cis(&modality.positions, self.inner_dim, dtype, &self.rope)?;
        let self_attention_mask = match &modality.attention_mask {
            Some(m) => Some(Self::self_attention_bias(m, dtype)?),
            None => None,
        };
        let mut args = TransformerArgs {
            x,
            context,
            context_mask,
            timesteps,
            embedded_timestep,
            positional_embeddings,
            cross_positional_embeddings: None,
            cross_scale_shift_timestep: None,
            cross_gate_timestep: None,
            enabled: modality.enabled,
            prompt_timestep,
            self_attention_mask,
            context_key: modality.context_key.clone(),
        };
        if let (Some(cp), Some(other)) = (&self.cross, cross) {
            let time_axis = modality.positions.narrow(1, 0, 1)?;
            let spec = RopeSpec {
                max_pos: vec![cp.cross_pe_max_pos],
                use_middle_indices_grid: true,
                ..self.rope.clone()
            };
            args.cross_positional_embeddings = Some(precompute_freqs_cis(
                &time_axis,
                cp.audio_cross_attention_dim,
                dtype,
                &spec,
            )?);
            // scale and shift from this stream's own (per-token) timesteps, the gate from the
            // other stream's sigma, one per sample (reference 1.2.0; 1.0.0 took both from the
            // other stream's sigma)
            let (ss, _) = self.prepare_timestep(
                &modality.timesteps,
                &cp.cross_scale_shift_adaln,
                batch,
                dtype,
            )?;
            let sigma = sigma_per_batch(&other.sigma, batch)?;
            let factor = cp.av_ca_timestep_scale_multiplier / self.timestep_scale_multiplier;
            let scaled = ((sigma * self.timestep_scale_multiplier)? * factor)?;
            let (gate, _) = cp.cross_gate_adaln.forward(&scaled, dtype)?;
            args.cross_scale_shift_timestep = Some(ss);
            args.cross_gate_timestep = Some(gate.unsqueeze(1)?);
        }
        Ok(args)
    }
}

//! Port of `ltx_core/model/transformer/model.py`: `LTXModel` (velocity prediction) and the
//! `X0Model` / `LegacyX0Model` wrappers that turn it into a denoised prediction.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::{Linear, VarBuilder};

use super::adaln::AdaLayerNormSingle;
use super::modality::Modality;
use super::model_configurator::{LtxModelConfig, LtxModelType};
use super::perturb_shim::BatchedPerturbationConfig;
use super::rope::RopeSpec;
use super::text_projection::{PixArtAlphaTextProjection, TextProjectionAct};
use super::transformer::{BasicAvTransformerBlock, StreamConfig};
use super::transformer_args::{CrossModalPreprocessor, TransformerArgsPreprocessor};

/// One stream's input and output layers.
#[derive(Clone, Debug)]
struct StreamIo {
    preprocessor: TransformerArgsPreprocessor,
    scale_shift_table: Tensor,
    proj_out: Linear,
    norm_eps: f64,
}

impl StreamIo {
    /// `LayerNorm(x)·(1 + scale) + shift` with `[shift, scale] = table + embedded_timestep`, then
    /// `proj_out`.
    fn output(&self, x: &Tensor, embedded_timestep: &Tensor) -> Result<Tensor> {
        let d = self.scale_shift_table.dim(1)?;
        let table = self
            .scale_shift_table
            .to_dtype(x.dtype())?
            .reshape((1, 1, 2, d))?;
        let values = table.broadcast_add(&embedded_timestep.unsqueeze(2)?)?;
        let shift = values.narrow(2, 0, 1)?.squeeze(2)?;
        let scale = values.narrow(2, 1, 1)?.squeeze(2)?;
        let x = layer_norm(x, self.norm_eps)?;
        let x = x.broadcast_mul(&(scale + 1.0)?)?.broadcast_add(&shift)?;
        self.proj_out.forward(&x)
    }
}

/// `LayerNorm` without affine parameters over the last dim (statistics in f32).
fn layer_norm(x: &Tensor, eps: f64) -> Result<Tensor> {
    let dtype = x.dtype();
    let xf = x.to_dtype(DType::F32)?;
    let mean = xf.mean_keepdim(D::Minus1)?;
    let centred = xf.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    centred
        .broadcast_div(&(var + eps)?.sqrt()?)?
        .to_dtype(dtype)
}

/// The LTX-2 / LTX-2.3 diffusion transformer.
#[derive(Clone, Debug)]
pub struct LtxModel {
    model_type: LtxModelType,
    video: Option<StreamIo>,
    audio: Option<StreamIo>,
    blocks: Vec<BasicAvTransformerBlock>,
}

fn caption_projection(
    cfg: &LtxModelConfig,
    inner_dim: usize,
    vb: VarBuilder,
) -> Result<Option<PixArtAlphaTextProjection>> {
    if !cfg.has_caption_projection() {
        return Ok(None);
    }
    let channels = cfg.caption_channels.ok_or_else(|| {
        candle_core::Error::Msg("caption_channels is required for the caption projection".into())
    })?;
    PixArtAlphaTextProjection::new(channels, inner_dim, None, TextProjectionAct::GeluTanh, vb)
        .map(Some)
}

impl LtxModel {
    /// Builds the model from its config; weights under the reference's module names (no prefix).
    pub fn new(cfg: &LtxModelConfig, model_type: LtxModelType, vb: VarBuilder) -> Result<Self> {
        let k = cfg.adaln_coefficient();
        let av = model_type.is_video_enabled() && model_type.is_audio_enabled();
        let cross_pe_max_pos = cfg
            .positional_embedding_max_pos
            .first()
            .copied()
            .unwrap_or(0)
            .max(
                cfg.audio_positional_embedding_max_pos
                    .first()
                    .copied()
                    .unwrap_or(0),
            );
        let rope = |max_pos: &[usize], heads: usize| RopeSpec {
            theta: cfg.positional_embedding_theta,
            max_pos: max_pos.to_vec(),
            use_middle_indices_grid: cfg.use_middle_indices_grid,
            num_attention_heads: heads,
            rope_type: cfg.rope_type,
            double_precision: cfg.double_precision_rope(),
        };
        let stream = |prefix: &str,
                      inner: usize,
                      heads: usize,
                      in_ch: usize,
                      out_ch: usize,
                      max_pos: &[usize],
                      caption_key: &str,
                      cross_keys: (&str, &str)|
         -> Result<StreamIo> {
            let p = |n: &str| vb.pp(format!("{prefix}{n}"));
            let cross = if av {
                Some(CrossModalPreprocessor {
                    cross_scale_shift_adaln: AdaLayerNormSingle::new(
                        inner,
                        4,
                        vb.pp(cross_keys.0),
                    )?,
                    cross_gate_adaln: AdaLayerNormSingle::new(inner, 1, vb.pp(cross_keys.1))?,
                    cross_pe_max_pos,
                    audio_cross_attention_dim: cfg.audio_cross_attention_dim,
                    av_ca_timestep_scale_multiplier: cfg.av_ca_timestep_scale_multiplier,
                })
            } else {
                None
            };
            Ok(StreamIo {
                preprocessor: TransformerArgsPreprocessor {
                    patchify_proj: candle_nn::linear(in_ch, inner, p("patchify_proj"))?,
                    adaln: AdaLayerNormSingle::new(inner, k, p("adaln_single"))?,
                    inner_dim: inner,
                    rope: rope(max_pos, heads),
                    timestep_scale_multiplier: cfg.timestep_scale_multiplier,
                    caption_projection: caption_projection(cfg, inner, vb.pp(caption_key))?,
                    prompt_adaln: if cfg.cross_attention_adaln {
                        Some(AdaLayerNormSingle::new(inner, 2, p("prompt_adaln_single"))?)
                    } else {
                        None
                    },
                    cross,
                },
                scale_shift_table: vb.get((2, inner), &format!("{prefix}scale_shift_table"))?,
                proj_out: candle_nn::linear(inner, out_ch, p("proj_out"))?,
                norm_eps: cfg.norm_eps,
            })
        };
        let video = if model_type.is_video_enabled() {
            Some(stream(
                "",
                cfg.inner_dim(),
                cfg.num_attention_heads,
                cfg.in_channels,
                cfg.out_channels,
                &cfg.positional_embedding_max_pos,
                "caption_projection",
                (
                    "av_ca_video_scale_shift_adaln_single",
                    "av_ca_a2v_gate_adaln_single",
                ),
            )?)
        } else {
            None
        };
        let audio = if model_type.is_audio_enabled() {
            Some(stream(
                "audio_",
                cfg.audio_inner_dim(),
                cfg.audio_num_attention_heads,
                cfg.audio_in_channels,
                cfg.audio_out_channels,
                &cfg.audio_positional_embedding_max_pos,
                "audio_caption_projection",
                (
                    "av_ca_audio_scale_shift_adaln_single",
                    "av_ca_v2a_gate_adaln_single",
                ),
            )?)
        } else {
            None
        };
        let video_cfg = model_type.is_video_enabled().then(|| StreamConfig {
            dim: cfg.inner_dim(),
            heads: cfg.num_attention_heads,
            d_head: cfg.attention_head_dim,
            context_dim: cfg.cross_attention_dim,
            apply_gated_attention: cfg.apply_gated_attention,
            cross_attention_adaln: cfg.cross_attention_adaln,
        });
        let audio_cfg = model_type.is_audio_enabled().then(|| StreamConfig {
            dim: cfg.audio_inner_dim(),
            heads: cfg.audio_num_attention_heads,
            d_head: cfg.audio_attention_head_dim,
            context_dim: cfg.audio_cross_attention_dim,
            apply_gated_attention: cfg.apply_gated_attention,
            cross_attention_adaln: cfg.cross_attention_adaln,
        });
        let vb_blocks = vb.pp("transformer_blocks");
        let blocks = (0..cfg.num_layers)
            .map(|i| {
                BasicAvTransformerBlock::new(
                    i,
                    video_cfg.as_ref(),
                    audio_cfg.as_ref(),
                    cfg.norm_eps,
                    vb_blocks.pp(i),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            model_type,
            video,
            audio,
            blocks,
        })
    }

    pub fn model_type(&self) -> LtxModelType {
        self.model_type
    }

    /// Velocity predictions `(video [B, T, C], audio [B, T, C])` for the given streams.
    pub fn forward(
        &self,
        video: Option<&Modality>,
        audio: Option<&Modality>,
        perturbations: Option<&BatchedPerturbationConfig>,
    ) -> crate::Result<(Option<Tensor>, Option<Tensor>)> {
        use crate::Error;
        if video.is_some() && !self.model_type.is_video_enabled() {
            return Err(Error::InvalidInput(
                "video is not enabled for this model".into(),
            ));
        }
        if audio.is_some() && !self.model_type.is_audio_enabled() {
            return Err(Error::InvalidInput(
                "audio is not enabled for this model".into(),
            ));
        }
        let batch = match (video, audio) {
            (Some(v), _) => v.latent.dim(0)?,
            (None, Some(a)) => a.latent.dim(0)?,
            (None, None) => {
                return Err(Error::InvalidInput(
                    "at least one of video or audio must be given".into(),
                ))
            }
        };
        let empty;
        let perturbations = match perturbations {
            Some(p) => p,
            None => {
                empty = BatchedPerturbationConfig::empty(batch);
                &empty
            }
        };
        let v_args = match (video, &self.video) {
            (Some(m), Some(io)) => Some(io.preprocessor.prepare(m, audio)?),
            _ => None,
        };
        let a_args = match (audio, &self.audio) {
            (Some(m), Some(io)) => Some(io.preprocessor.prepare(m, video)?),
            _ => None,
        };
        let (mut v_args, mut a_args) = (v_args, a_args);
        for block in &self.blocks {
            let (vx, ax) = block.forward(v_args.as_ref(), a_args.as_ref(), perturbations)?;
            if let (Some(a), Some(x)) = (v_args.as_mut(), vx) {
                a.x = x;
            }
            if let (Some(a), Some(x)) = (a_args.as_mut(), ax) {
                a.x = x;
            }
        }
        let vx = match (&v_args, &self.video) {
            (Some(a), Some(io)) => Some(io.output(&a.x, &a.embedded_timestep)?),
            _ => None,
        };
        let ax = match (&a_args, &self.audio) {
            (Some(a), Some(io)) => Some(io.output(&a.x, &a.embedded_timestep)?),
            _ => None,
        };
        Ok((vx, ax))
    }
}

/// `x − v·σ` in f32, cast back to the sample dtype (the reference's `to_denoised` with a tensor
/// sigma broadcast over the tokens).
fn denoise(sample: &Tensor, velocity: &Tensor, sigma: &Tensor) -> Result<Tensor> {
    let s = sample.to_dtype(DType::F32)?;
    let v = velocity.to_dtype(DType::F32)?;
    let sigma = sigma.to_dtype(DType::F32)?;
    (s - v.broadcast_mul(&sigma)?)?.to_dtype(sample.dtype())
}

/// Denoised prediction with per-token timesteps (`σ · denoise_mask`).
#[derive(Clone, Debug)]
pub struct X0Model {
    pub velocity_model: LtxModel,
}

impl X0Model {
    pub fn forward(
        &self,
        video: Option<&Modality>,
        audio: Option<&Modality>,
        perturbations: Option<&BatchedPerturbationConfig>,
    ) -> crate::Result<(Option<Tensor>, Option<Tensor>)> {
        let (vx, ax) = self.velocity_model.forward(video, audio, perturbations)?;
        let vd = match (vx, video) {
            (Some(v), Some(m)) => Some(denoise(&m.latent, &v, &m.timesteps)?),
            _ => None,
        };
        let ad = match (ax, audio) {
            (Some(v), Some(m)) => Some(denoise(&m.latent, &v, &m.timesteps)?),
            _ => None,
        };
        Ok((vd, ad))
    }
}

/// Denoised prediction with one scalar sigma for every token.
#[derive(Clone, Debug)]
pub struct LegacyX0Model {
    pub velocity_model: LtxModel,
}

impl LegacyX0Model {
    pub fn forward(
        &self,
        video: Option<&Modality>,
        audio: Option<&Modality>,
        perturbations: Option<&BatchedPerturbationConfig>,
        sigma: f64,
    ) -> crate::Result<(Option<Tensor>, Option<Tensor>)> {
        let (vx, ax) = self.velocity_model.forward(video, audio, perturbations)?;
        let one = |m: &Modality, v: &Tensor| -> Result<Tensor> {
            let s = Tensor::new(sigma as f32, v.device())?;
            denoise(&m.latent, v, &s)
        };
        let vd = match (vx, video) {
            (Some(v), Some(m)) => Some(one(m, &v)?),
            _ => None,
        };
        let ad = match (ax, audio) {
            (Some(v), Some(m)) => Some(one(m, &v)?),
            _ => None,
        };
        Ok((vd, ad))
    }
}

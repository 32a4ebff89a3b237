//! Port of `ltx_core/model/transformer/model.py`: `LTXModel` (velocity prediction) and the
//! `X0Model` / `LegacyX0Model` wrappers that turn it into a denoised prediction.

use std::sync::Arc;

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{Linear, VarBuilder};

use super::adaln::AdaLayerNormSingle;
use super::modality::Modality;
use super::model_configurator::{LtxModelConfig, LtxModelType};
use super::rope::RopeSpec;
use super::text_projection::{PixArtAlphaTextProjection, TextProjectionAct};
use super::transformer::{BasicAvTransformerBlock, StreamConfig};
use super::transformer_args::{CrossModalPreprocessor, TransformerArgsPreprocessor};
use crate::guidance::perturbations::BatchedPerturbationConfig;
use crate::loader::block_store::{BlockStore, BlockStreamer};
use crate::loader::StateDict;
use crate::quantization::LinearSource;

/// One stream's input and output layers.
#[derive(Clone, Debug)]
struct StreamIo {
    preprocessor: TransformerArgsPreprocessor,
    in_channels: usize,
    /// Width the text context must have on input (caption channels for the 19B projection).
    context_dim: usize,
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

impl StreamIo {
    /// Shape checks of one stream's input: typed errors instead of failures deep in the blocks.
    fn check(&self, m: &Modality, name: &str, batch: usize) -> crate::Result<()> {
        use crate::error::bad_shape;
        let bad = |what: &str, t: &Tensor, want: String| {
            Err(bad_shape(format!("{name} {what}"), t.dims(), want))
        };
        let (b, t, c) = match *m.latent.dims() {
            [b, t, c] => (b, t, c),
            _ => return bad("latent", &m.latent, "[B, tokens, channels]".into()),
        };
        if b != batch || c != self.in_channels {
            return bad(
                "latent",
                &m.latent,
                format!("[{batch}, tokens, {}]", self.in_channels),
            );
        }
        let axes = self.preprocessor.rope.max_pos.len();
        let pos_ok = match *m.positions.dims() {
            [pb, pa, pt, 2] => pb == b && pa == axes && pt == t,
            [pb, pa, pt] => {
                pb == b && pa == axes && pt == t && !self.preprocessor.rope.use_middle_indices_grid
            }
            _ => false,
        };
        if !pos_ok {
            return bad("positions", &m.positions, format!("[{b}, {axes}, {t}, 2]"));
        }
        let n = m.timesteps.elem_count();
        if m.timesteps.dim(0).ok() != Some(b) || (n != b * t && n != b) {
            return bad(
                "timesteps",
                &m.timesteps,
                format!("[{b}, {t}, 1] or [{b}, 1]"),
            );
        }
        let s = m.sigma.elem_count();
        if s != 1 && s != b {
            return bad("sigma", &m.sigma, format!("a scalar or [{b}]"));
        }
        match *m.context.dims() {
            [cb, _, cd] if cb == b && cd == self.context_dim => {}
            _ => {
                return bad(
                    "context",
                    &m.context,
                    format!("[{b}, length, {}]", self.context_dim),
                )
            }
        }
        if let Some(mask) = &m.attention_mask {
            if mask.dims() != [b, t, t] {
                return bad("attention mask", mask, format!("[{b}, {t}, {t}]"));
            }
        }
        if let Some(mask) = &m.context_mask {
            if mask.dim(0).ok() != Some(b)
                || mask.dim(mask.rank().max(1) - 1).ok() != Some(m.context.dim(1)?)
            {
                return bad(
                    "context mask",
                    mask,
                    format!("[{b}, {}]", m.context.dim(1)?),
                );
            }
        }
        Ok(())
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
    blocks: BlockStore<BasicAvTransformerBlock>,
}

/// The widths every block of a model is built with.
#[derive(Clone, Debug)]
pub struct BlockSpec {
    video: Option<StreamConfig>,
    audio: Option<StreamConfig>,
    norm_eps: f64,
}

impl BlockSpec {
    pub fn new(cfg: &LtxModelConfig, model_type: LtxModelType) -> Self {
        let stream = |enabled: bool, dim, heads, d_head, context_dim, ff_bias| {
            enabled.then_some(StreamConfig {
                dim,
                heads,
                d_head,
                context_dim,
                apply_gated_attention: cfg.apply_gated_attention,
                cross_attention_adaln: cfg.cross_attention_adaln,
                ff_bias,
                text_kv_cache: cfg.text_kv_step_invariant(),
            })
        };
        Self {
            video: stream(
                model_type.is_video_enabled(),
                cfg.inner_dim(),
                cfg.num_attention_heads,
                cfg.attention_head_dim,
                cfg.cross_attention_dim,
                cfg.ff_bias,
            ),
            audio: stream(
                model_type.is_audio_enabled(),
                cfg.audio_inner_dim(),
                cfg.audio_num_attention_heads,
                cfg.audio_attention_head_dim,
                cfg.audio_cross_attention_dim,
                cfg.audio_ff_bias,
            ),
            norm_eps: cfg.norm_eps,
        }
    }

    /// Block `i`, its weights under `transformer_blocks.{i}.` of the model's `vb`.
    pub fn build(
        &self,
        i: usize,
        vb: &VarBuilder,
        linears: &LinearSource,
    ) -> Result<BasicAvTransformerBlock> {
        BasicAvTransformerBlock::new(
            i,
            self.video.as_ref(),
            self.audio.as_ref(),
            self.norm_eps,
            vb.pp("transformer_blocks").pp(i),
            linears,
        )
    }

    /// The key prefix of block `i`'s weights.
    pub fn prefix(i: usize) -> String {
        format!("transformer_blocks.{i}.")
    }
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
        Self::with_blocks(cfg, model_type, vb, Err(LinearSource::wide()))
    }

    /// [`LtxModel::new`] over a state dict: the block linears in the form `sd` holds their
    /// weights (fp8, GGUF blocks or wide; see [`crate::quantization`]).
    pub fn load(
        cfg: &LtxModelConfig,
        model_type: LtxModelType,
        sd: &Arc<StateDict>,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let vb = sd.var_builder(dtype, device);
        Self::with_blocks(cfg, model_type, vb, Err(LinearSource::new(sd)))
    }

    /// [`LtxModel::new`] with the blocks streamed: the first `resident` blocks are built now and
    /// kept, the others are staged and built by `streamer` on every forward. `vb` serves the
    /// weights outside the blocks.
    pub fn new_streamed(
        cfg: &LtxModelConfig,
        model_type: LtxModelType,
        vb: VarBuilder,
        resident: usize,
        streamer: BlockStreamer<BasicAvTransformerBlock>,
    ) -> Result<Self> {
        Self::with_blocks(cfg, model_type, vb, Ok((resident, streamer)))
    }

    /// `blocks`: streamed (resident count, streamer), or all resident with these linears.
    fn with_blocks(
        cfg: &LtxModelConfig,
        model_type: LtxModelType,
        vb: VarBuilder,
        blocks: std::result::Result<(usize, BlockStreamer<BasicAvTransformerBlock>), LinearSource>,
    ) -> Result<Self> {
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
                in_channels: in_ch,
                context_dim: if cfg.has_caption_projection() {
                    cfg.caption_channels.unwrap_or(inner)
                } else {
                    inner
                },
                preprocessor: TransformerArgsPreprocessor {
                    patchify_proj: candle_nn::linear(in_ch, inner, p("patchify_proj"))?,
                    adaln: AdaLayerNormSingle::new(inner, k, p("adaln_single"))?,
                    inner_dim: inner,
                    rope: rope(max_pos, heads),
                    timestep_scale_multiplier: cfg.timestep_scale_multiplier,
                    caption_projection: caption_projection(cfg, inner, vb.pp(caption_key))?,
                    prompt_adaln: if cfg.has_prompt_adaln() {
                        Some(AdaLayerNormSingle::new(inner, 2, p("prompt_adaln_single"))?)
                    } else {
                        None
                    },
                    cross,
                    // the video stream's only
                    keyframes_embedding: if prefix.is_empty() && cfg.use_keyframes_abs_pos_embedding
                    {
                        Some(vb.get((1, inner), "keyframes_abs_pos_embedding")?)
                    } else {
                        None
                    },
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
        let spec = BlockSpec::new(cfg, model_type);
        let blocks = match blocks {
            Err(linears) => BlockStore::resident(
                (0..cfg.num_layers)
                    .map(|i| spec.build(i, &vb, &linears))
                    .collect::<Result<Vec<_>>>()?,
            ),
            Ok((resident, streamer)) => BlockStore::streamed(cfg.num_layers, resident, streamer)
                .map_err(crate::Error::into_candle)?,
        };
        Ok(Self {
            model_type,
            video,
            audio,
            blocks,
        })
    }

    /// Text contexts whose cross-attention keys and values are cached, summed over the layers
    /// (resident blocks only: a streamed block is rebuilt, without its cache, at every forward).
    pub fn cached_text_contexts(&self) -> usize {
        self.blocks
            .resident_blocks()
            .flat_map(|b| b.text_kv_caches())
            .map(|c| c.len())
            .sum()
    }

    /// Frees the cached text keys and values (a new prompt would refill them anyway; this only
    /// returns their memory early).
    pub fn clear_text_kv_cache(&self) {
        for cache in self
            .blocks
            .resident_blocks()
            .flat_map(|b| b.text_kv_caches())
        {
            cache.clear();
        }
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
        if let (Some(m), Some(io)) = (video, &self.video) {
            io.check(m, "video", batch)?;
        }
        if let (Some(m), Some(io)) = (audio, &self.audio) {
            io.check(m, "audio", batch)?;
        }
        if let Some(p) = perturbations {
            if p.perturbations.len() != batch {
                return Err(Error::InvalidInput(format!(
                    "{} perturbation configs for a batch of {batch}",
                    p.perturbations.len()
                )));
            }
        }
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
        self.blocks.for_each(|_, block| {
            let (vx, ax) = block.forward(v_args.as_ref(), a_args.as_ref(), perturbations)?;
            if let (Some(a), Some(x)) = (v_args.as_mut(), vx) {
                a.x = x;
            }
            if let (Some(a), Some(x)) = (a_args.as_mut(), ax) {
                a.x = x;
            }
            Ok(())
        })?;
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

/// `to_denoised(latent, velocity, σ(modality))` for each stream that produced a velocity.
fn denoise_streams(
    velocities: (Option<Tensor>, Option<Tensor>),
    video: Option<&Modality>,
    audio: Option<&Modality>,
    sigma: impl Fn(&Modality) -> crate::utils::Sigma<'_>,
) -> crate::Result<(Option<Tensor>, Option<Tensor>)> {
    let one = |v: Option<Tensor>, m: Option<&Modality>| -> crate::Result<Option<Tensor>> {
        match (v, m) {
            (Some(v), Some(m)) => Ok(Some(crate::utils::to_denoised(&m.latent, &v, sigma(m))?)),
            _ => Ok(None),
        }
    };
    Ok((one(velocities.0, video)?, one(velocities.1, audio)?))
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
        let velocities = self.velocity_model.forward(video, audio, perturbations)?;
        denoise_streams(velocities, video, audio, |m| {
            crate::utils::Sigma::Tensor(&m.timesteps)
        })
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
        let velocities = self.velocity_model.forward(video, audio, perturbations)?;
        denoise_streams(velocities, video, audio, |_| {
            crate::utils::Sigma::Value(sigma)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use candle_core::{DType, Device, Tensor};
    use serde_json::json;

    use super::*;
    use crate::loader::synthetic::random_weights;
    use crate::loader::StateDict;
    use crate::model::transformer::ContextKey;
    use crate::Error;

    fn tiny_config() -> serde_json::Value {
        json!({"transformer": {
            "dropout": 0.0, "attention_bias": true, "activation_fn": "gelu-approximate",
            "num_embeds_ada_norm": 1000, "use_linear_projection": false, "only_cross_attention": false,
            "cross_attention_norm": true, "double_self_attention": false, "upcast_attention": false,
            "standardization_norm": "rms_norm", "norm_elementwise_affine": false, "qk_norm": "rms_norm",
            "positional_embedding_type": "rope", "use_audio_video_cross_attention": true,
            "share_ff": false, "av_cross_ada_norm": true, "use_middle_indices_grid": true,
            "num_attention_heads": 2, "attention_head_dim": 8, "in_channels": 16, "out_channels": 16,
            "num_layers": 1, "cross_attention_dim": 16, "caption_channels": 12,
            "audio_num_attention_heads": 2, "audio_attention_head_dim": 4, "audio_in_channels": 16,
            "audio_out_channels": 16, "audio_cross_attention_dim": 8, "rope_type": "split",
            "frequencies_precision": "float64", "av_ca_timestep_scale_multiplier": 1000.0
        }})
    }

    fn tiny_model() -> LtxModel {
        let cfg = LtxModelConfig::from_checkpoint_config(&tiny_config(), LtxModelType::AudioVideo)
            .unwrap();
        let weights = random_weights(1, DType::F32, "", |vb| {
            LtxModel::new(&cfg, LtxModelType::AudioVideo, vb).map_err(Error::from)
        })
        .unwrap();
        let sd = Arc::new(StateDict::from_tensors(weights));
        LtxModel::new(
            &cfg,
            LtxModelType::AudioVideo,
            sd.var_builder(DType::F32, &Device::Cpu),
        )
        .unwrap()
    }

    fn modality(tokens: usize, channels: usize, axes: usize, ctx: usize) -> Modality {
        let dev = Device::Cpu;
        Modality {
            latent: Tensor::zeros((1, tokens, channels), DType::F32, &dev).unwrap(),
            sigma: Tensor::new(&[0.5f32], &dev).unwrap(),
            timesteps: Tensor::full(0.5f32, (1, tokens, 1), &dev).unwrap(),
            positions: Tensor::zeros((1, axes, tokens, 2), DType::F32, &dev).unwrap(),
            context: Tensor::zeros((1, 3, ctx), DType::F32, &dev).unwrap(),
            enabled: true,
            context_mask: None,
            attention_mask: None,
            keyframes_mask: None,
            context_key: None,
        }
    }

    #[test]
    fn runs_and_rejects_misshaped_inputs() {
        let model = tiny_model();
        let video = modality(4, 16, 3, 12);
        let audio = modality(5, 16, 1, 12);
        let (v, a) = model.forward(Some(&video), Some(&audio), None).unwrap();
        assert_eq!(v.unwrap().dims(), &[1, 4, 16]);
        assert_eq!(a.unwrap().dims(), &[1, 5, 16]);

        let shape_err = |r: crate::Result<(Option<Tensor>, Option<Tensor>)>| {
            assert!(matches!(r, Err(Error::TensorShape { .. })), "{:?}", r.err());
        };
        // wrong latent channels, positions axes, context width, timesteps, attention mask
        shape_err(model.forward(Some(&modality(4, 8, 3, 12)), Some(&audio), None));
        shape_err(model.forward(Some(&modality(4, 16, 1, 12)), Some(&audio), None));
        shape_err(model.forward(Some(&modality(4, 16, 3, 16)), Some(&audio), None));
        let mut bad = modality(4, 16, 3, 12);
        bad.timesteps = Tensor::zeros((1, 3, 1), DType::F32, &Device::Cpu).unwrap();
        shape_err(model.forward(Some(&bad), Some(&audio), None));
        let mut bad = modality(4, 16, 3, 12);
        bad.attention_mask = Some(Tensor::zeros((1, 4, 5), DType::F32, &Device::Cpu).unwrap());
        shape_err(model.forward(Some(&bad), Some(&audio), None));
        assert!(model.forward(None, None, None).is_err());
    }

    /// A step-invariant text context (no prompt AdaLN): its keys and values are computed once
    /// per prompt tensor and reused, bit for bit what recomputing them gives.
    #[test]
    fn text_keys_and_values_are_cached_across_steps() {
        let dev = Device::Cpu;
        let with_context = |m: Modality, seed: f64, keyed: bool| {
            let context = (Tensor::arange(0f32, 36., &dev)
                .unwrap()
                .reshape((1, 3, 12))
                .unwrap()
                * (0.05 * seed))
                .unwrap()
                .sin()
                .unwrap();
            Modality {
                context_key: keyed.then(|| ContextKey::of(&context)),
                context,
                ..m
            }
        };
        let step = |m: &Modality, sigma: f32| Modality {
            sigma: Tensor::new(&[sigma], &dev).unwrap(),
            timesteps: Tensor::full(sigma, m.timesteps.dims(), &dev).unwrap(),
            latent: (m.latent.clone() + sigma as f64).unwrap(),
            ..m.clone()
        };
        let bits = |t: Option<Tensor>| {
            let v: Vec<f32> = t.unwrap().flatten_all().unwrap().to_vec1().unwrap();
            v.into_iter().map(f32::to_bits).collect::<Vec<_>>()
        };
        let model = tiny_model();
        let (video, audio) = (
            with_context(modality(4, 16, 3, 12), 1.0, true),
            with_context(modality(5, 16, 1, 12), 2.0, true),
        );
        assert_eq!(model.cached_text_contexts(), 0);
        for (i, sigma) in [0.9f32, 0.5, 0.1].into_iter().enumerate() {
            let (v, a) = (step(&video, sigma), step(&audio, sigma));
            let cached = model.forward(Some(&v), Some(&a), None).unwrap();
            // one context per stream and block, filled at the first step
            assert_eq!(model.cached_text_contexts(), 2, "step {i}");
            let unkeyed = |m: &Modality| Modality {
                context_key: None,
                ..m.clone()
            };
            let fresh = model
                .forward(Some(&unkeyed(&v)), Some(&unkeyed(&a)), None)
                .unwrap();
            assert_eq!(bits(cached.0), bits(fresh.0), "video, step {i}");
            assert_eq!(bits(cached.1), bits(fresh.1), "audio, step {i}");
        }
        // another prompt tensor is another context
        let other = with_context(modality(4, 16, 3, 12), 3.0, true);
        let cached = model.forward(Some(&other), Some(&audio), None).unwrap();
        assert_eq!(model.cached_text_contexts(), 3);
        let fresh = with_context(modality(4, 16, 3, 12), 3.0, false);
        let fresh = model.forward(Some(&fresh), Some(&audio), None).unwrap();
        assert_eq!(bits(cached.0), bits(fresh.0), "another prompt");
        model.clear_text_kv_cache();
        assert_eq!(model.cached_text_contexts(), 0);
        // with the prompt AdaLN the context follows sigma: nothing is cached
        let mut cfg = tiny_config();
        cfg["transformer"]["cross_attention_adaln"] = json!(true);
        cfg["transformer"]["use_prompt_adaln_single"] = json!(true);
        let cfg = LtxModelConfig::from_checkpoint_config(&cfg, LtxModelType::AudioVideo).unwrap();
        let weights = random_weights(2, DType::F32, "", |vb| {
            LtxModel::new(&cfg, LtxModelType::AudioVideo, vb).map_err(Error::from)
        })
        .unwrap();
        let sd = Arc::new(StateDict::from_tensors(weights));
        let adaln = LtxModel::new(
            &cfg,
            LtxModelType::AudioVideo,
            sd.var_builder(DType::F32, &dev),
        )
        .unwrap();
        adaln.forward(Some(&video), Some(&audio), None).unwrap();
        assert_eq!(adaln.cached_text_contexts(), 0);
    }

    #[test]
    fn config_checks_are_typed_errors() {
        let mut cfg = tiny_config();
        cfg["transformer"]["dropout"] = json!(0.1);
        let err =
            LtxModelConfig::from_checkpoint_config(&cfg, LtxModelType::AudioVideo).unwrap_err();
        assert!(matches!(err, Error::UnsupportedConfig { .. }), "{err}");
        let mut cfg = tiny_config();
        cfg["transformer"]
            .as_object_mut()
            .unwrap()
            .remove("qk_norm");
        assert!(LtxModelConfig::from_checkpoint_config(&cfg, LtxModelType::AudioVideo).is_err());
        let mut cfg = tiny_config();
        cfg["transformer"]["rope_type"] = json!("spiral");
        assert!(LtxModelConfig::from_checkpoint_config(&cfg, LtxModelType::AudioVideo).is_err());
        let mut cfg = tiny_config();
        cfg["transformer"]
            .as_object_mut()
            .unwrap()
            .remove("caption_channels");
        assert!(LtxModelConfig::from_checkpoint_config(&cfg, LtxModelType::AudioVideo).is_err());
        // video-only configs do not need the audio-video keys
        let mut cfg = tiny_config();
        cfg["transformer"]
            .as_object_mut()
            .unwrap()
            .remove("share_ff");
        assert!(LtxModelConfig::from_checkpoint_config(&cfg, LtxModelType::VideoOnly).is_ok());
    }
}

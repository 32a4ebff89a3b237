//! Port of `ltx_pipelines/utils/denoisers.py`: the denoising functions a stage's loop calls each
//! step — one conditional pass, a CFG-style guider, and the multimodal guider (negative prompt,
//! STG, isolated modalities, sigma bins).

use candle_core::{DType, Tensor};
use ltx_core::components::guiders::{Guider, MultiModalGuider, MultiModalGuiderFactory, Uncond};
use ltx_core::guidance::perturbations::{
    BatchedPerturbationConfig, Perturbation, PerturbationConfig, PerturbationType,
};
use ltx_core::model::transformer::model::X0Model;
use ltx_core::model::transformer::{ContextKey, Modality};

use super::helpers::modality_from_latent_state;
use super::request::GuidanceRequest;
pub use super::types::{DenoisingFunc, Pair, States};
use crate::{Error, Result};

/// One transformer pass on both modalities: the states with `contexts` (video, audio) at
/// `sigma`, each modality run or not (`enabled`), under `perturbations`.
fn pass(
    transformer: &X0Model,
    (video, audio): States,
    contexts: (&Tensor, &Tensor),
    (sigma, enabled): (&Tensor, (bool, bool)),
    perturbations: Option<&BatchedPerturbationConfig>,
) -> Result<Pair> {
    let v = modality_from_latent_state(video, contexts.0, sigma, enabled.0)?;
    let a = modality_from_latent_state(audio, contexts.1, sigma, enabled.1)?;
    match transformer.forward(Some(&v), Some(&a), perturbations)? {
        (Some(v), Some(a)) => Ok((v, a)),
        _ => Err(Error::InvalidArgument(
            "the transformer did not return both modalities (is it an audio-video model?)".into(),
        )),
    }
}

/// One pass of a guidance step: its (video, audio) contexts, its perturbations (`None`: none)
/// and which modalities it runs.
struct PassSpec<'c> {
    contexts: (&'c Tensor, &'c Tensor),
    perturbations: Option<Vec<Perturbation>>,
    enabled: (bool, bool),
}

/// Appends `spec` (if any) and returns where it is.
fn push_pass<'c>(specs: &mut Vec<PassSpec<'c>>, spec: Option<PassSpec<'c>>) -> Option<usize> {
    spec.map(|spec| {
        specs.push(spec);
        specs.len() - 1
    })
}

/// `parts` concatenated along the batch (a 0-d or one-value sigma repeated per sample), or `None`
/// when they do not line up (another context length, a mask on some only).
fn cat_modalities(parts: &[Modality]) -> Result<Option<Modality>> {
    let first = &parts[0];
    let same = |f: fn(&Modality) -> Option<&Tensor>| {
        parts.iter().all(|m| match (f(m), f(first)) {
            (Some(a), Some(b)) => a.dims() == b.dims(),
            (None, None) => true,
            _ => false,
        })
    };
    if !same(|m| Some(&m.context))
        || !same(|m| m.context_mask.as_ref())
        || !same(|m| m.attention_mask.as_ref())
    {
        return Ok(None);
    }
    let cat = |f: fn(&Modality) -> &Tensor| -> Result<Tensor> {
        let ts: Vec<&Tensor> = parts.iter().map(f).collect();
        Ok(Tensor::cat(&ts, 0)?)
    };
    let cat_opt = |f: fn(&Modality) -> Option<&Tensor>| -> Result<Option<Tensor>> {
        match f(first) {
            None => Ok(None),
            Some(_) => {
                let ts: Vec<&Tensor> = parts.iter().filter_map(f).collect();
                Ok(Some(Tensor::cat(&ts, 0)?))
            }
        }
    };
    let batch = first.latent.dim(0)?;
    let sigma = if first.sigma.elem_count() == 1 && batch * parts.len() > 1 {
        // one noise level for every sample of every pass
        first.sigma.flatten_all()?.repeat(batch * parts.len())?
    } else {
        let ts: Vec<Tensor> = parts
            .iter()
            .map(|m| m.sigma.flatten_all())
            .collect::<candle_core::Result<_>>()?;
        Tensor::cat(&ts, 0)?
    };
    Ok(Some(Modality {
        latent: cat(|m| &m.latent)?,
        sigma,
        timesteps: cat(|m| &m.timesteps)?,
        positions: cat(|m| &m.positions)?,
        context: cat(|m| &m.context)?,
        enabled: first.enabled,
        context_mask: cat_opt(|m| m.context_mask.as_ref())?,
        attention_mask: cat_opt(|m| m.attention_mask.as_ref())?,
        keyframes_mask: cat_opt(|m| m.keyframes_mask.as_ref())?,
        context_key: parts
            .iter()
            .map(|m| m.context_key.as_ref())
            .collect::<Option<Vec<_>>>()
            .map(ContextKey::concat),
    }))
}

/// The passes of one step: one transformer call on their concatenation when `batch` and their
/// inputs line up (the reference's `GuidedDenoiser` always batches them), else one call each.
fn run_passes(
    transformer: &X0Model,
    states: States,
    specs: &[PassSpec],
    sigma: &Tensor,
    batch: bool,
) -> Result<Vec<Pair>> {
    let one_by_one = || -> Result<Vec<Pair>> {
        specs
            .iter()
            .map(|p| {
                let cfg = p.perturbations.clone().map(|list| {
                    BatchedPerturbationConfig::new(vec![PerturbationConfig::new(list)])
                });
                pass(
                    transformer,
                    states,
                    p.contexts,
                    (sigma, p.enabled),
                    cfg.as_ref(),
                )
            })
            .collect()
    };
    let enabled = specs[0].enabled;
    if !batch || specs.len() < 2 || specs.iter().any(|p| p.enabled != enabled) {
        return one_by_one();
    }
    let b = states.0.latent.dim(0)?;
    let mut video = Vec::with_capacity(specs.len());
    let mut audio = Vec::with_capacity(specs.len());
    for p in specs {
        video.push(modality_from_latent_state(
            states.0,
            p.contexts.0,
            sigma,
            enabled.0,
        )?);
        audio.push(modality_from_latent_state(
            states.1,
            p.contexts.1,
            sigma,
            enabled.1,
        )?);
    }
    let (Some(v), Some(a)) = (cat_modalities(&video)?, cat_modalities(&audio)?) else {
        return one_by_one();
    };
    let per_sample: Vec<PerturbationConfig> = specs
        .iter()
        .flat_map(|p| {
            let cfg = PerturbationConfig::new(p.perturbations.clone().unwrap_or_default());
            std::iter::repeat_n(cfg, b)
        })
        .collect();
    let cfg = BatchedPerturbationConfig::new(per_sample);
    let (Some(vo), Some(ao)) = transformer.forward(Some(&v), Some(&a), Some(&cfg))? else {
        return Err(Error::InvalidArgument(
            "the transformer did not return both modalities (is it an audio-video model?)".into(),
        ));
    };
    (0..specs.len())
        .map(|i| Ok((vo.narrow(0, i * b, b)?, ao.narrow(0, i * b, b)?)))
        .collect()
}

/// `simple_denoising_func`: one conditional pass.
pub struct SimpleDenoiser<'a> {
    pub transformer: &'a X0Model,
    pub video_context: Tensor,
    pub audio_context: Tensor,
}

impl<'a> SimpleDenoiser<'a> {
    /// `contexts`: the (video, audio) prompt contexts.
    pub fn new(transformer: &'a X0Model, contexts: (Tensor, Tensor)) -> Self {
        Self {
            transformer,
            video_context: contexts.0,
            audio_context: contexts.1,
        }
    }
}

impl DenoisingFunc for SimpleDenoiser<'_> {
    fn denoise(&mut self, states: States, sigmas: &Tensor, step: usize) -> Result<Pair> {
        let contexts = (&self.video_context, &self.audio_context);
        let sigma = sigmas.get(step)?;
        pass(
            self.transformer,
            states,
            contexts,
            (&sigma, (true, true)),
            None,
        )
    }
}

/// `guider_denoising_func`: a positive pass, and a negative-prompt pass combined by `guider`
/// when it is enabled.
pub struct GuiderDenoiser<'a, G: Guider> {
    pub transformer: &'a X0Model,
    pub guider: G,
    /// (positive, negative) video contexts.
    pub video_context: (Tensor, Tensor),
    /// (positive, negative) audio contexts.
    pub audio_context: (Tensor, Tensor),
}

impl<G: Guider> DenoisingFunc for GuiderDenoiser<'_, G> {
    fn denoise(&mut self, states: States, sigmas: &Tensor, step: usize) -> Result<Pair> {
        let sigma = (&sigmas.get(step)?, (true, true));
        let positive = (&self.video_context.0, &self.audio_context.0);
        let (mut dv, mut da) = pass(self.transformer, states, positive, sigma, None)?;
        if self.guider.enabled() {
            let negative = (&self.video_context.1, &self.audio_context.1);
            let (ndv, nda) = pass(self.transformer, states, negative, sigma, None)?;
            dv = (&dv + self.guider.delta(&dv, &ndv)?)?;
            da = (&da + self.guider.delta(&da, &nda)?)?;
        }
        Ok((dv, da))
    }
}

/// `multi_modal_guider_factory_denoising_func`: per step, each modality's guider parameters are
/// looked up by sigma; up to four transformer passes (conditional, negative prompt, STG-perturbed,
/// isolated modalities) are combined by `MultiModalGuider::calculate`. Steps a guider skips reuse
/// that modality's previous prediction.
pub struct MultiModalDenoiser<'a> {
    pub transformer: &'a X0Model,
    pub video_guider: MultiModalGuiderFactory,
    /// `None`: the video factory serves both modalities.
    pub audio_guider: Option<MultiModalGuiderFactory>,
    pub video_context: Tensor,
    pub audio_context: Tensor,
    /// Run a step's passes as one batched transformer call (as the reference does) instead of
    /// one call each: on by default off the CPU, where a bigger batch fills the device; off on
    /// the CPU, where it was measured no faster (`ltx bench step`) and multiplies the activations.
    pub batch_passes: bool,
    last: Option<Pair>,
}

impl<'a> MultiModalDenoiser<'a> {
    /// The guided pipelines' denoiser: each modality's guider from `guidance` against its
    /// negative-prompt context; `positive` / `negative` are (video, audio) contexts.
    pub fn from_guidance(
        transformer: &'a X0Model,
        guidance: &GuidanceRequest,
        positive: (Tensor, Tensor),
        negative: (Tensor, Tensor),
    ) -> Result<Self> {
        Ok(Self::new(
            transformer,
            MultiModalGuiderFactory::constant(guidance.video_guider.clone(), Some(negative.0))?,
            Some(MultiModalGuiderFactory::constant(
                guidance.audio_guider.clone(),
                Some(negative.1),
            )?),
            positive,
        ))
    }

    /// `contexts`: the positive (video, audio) contexts.
    pub fn new(
        transformer: &'a X0Model,
        video_guider: MultiModalGuiderFactory,
        audio_guider: Option<MultiModalGuiderFactory>,
        contexts: (Tensor, Tensor),
    ) -> Self {
        Self {
            transformer,
            video_guider,
            audio_guider,
            batch_passes: !contexts.0.device().is_cpu(),
            video_context: contexts.0,
            audio_context: contexts.1,
            last: None,
        }
    }
}

/// A pass's prediction for one modality as the guider takes it (0 when the pass was not run).
fn pick(o: &Option<Pair>, video: bool) -> Uncond<'_> {
    match o {
        Some((v, a)) => Uncond::Tensor(if video { v } else { a }),
        None => Uncond::Scalar(0.0),
    }
}

impl DenoisingFunc for MultiModalDenoiser<'_> {
    fn denoise(&mut self, states: States, sigmas: &Tensor, step: usize) -> Result<Pair> {
        let sigma_t = sigmas.get(step)?;
        let sigma_val = sigma_t.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let vg = self.video_guider.build_from_sigma(sigma_val);
        let ag = self
            .audio_guider
            .as_ref()
            .unwrap_or(&self.video_guider)
            .build_from_sigma(sigma_val);
        let (skip_v, skip_a) = (vg.should_skip_step(step), ag.should_skip_step(step));
        let missing_last = || {
            Error::InvalidArgument(format!(
                "guidance skips step {step} but no earlier step produced a prediction"
            ))
        };
        if skip_v && skip_a {
            return self.last.clone().ok_or_else(missing_last);
        }
        let t = self.transformer;
        let positive = (&self.video_context, &self.audio_context);
        let uncond = vg.do_unconditional_generation() || ag.do_unconditional_generation();
        let negative = if uncond {
            let need = |g: &MultiModalGuider| {
                g.do_unconditional_generation() && g.negative_context.is_none()
            };
            if need(&vg) || need(&ag) {
                return Err(Error::InvalidArgument(
                    "classifier-free guidance needs a negative prompt context".into(),
                ));
            }
            Some((
                vg.negative_context.as_ref().unwrap_or(positive.0),
                ag.negative_context.as_ref().unwrap_or(positive.1),
            ))
        } else {
            None
        };
        // the STG and isolated-modality passes: the positive pass under perturbations
        let stg = (vg.do_perturbed_generation() || ag.do_perturbed_generation()).then(|| {
            [
                (&vg, PerturbationType::SkipVideoSelfAttn),
                (&ag, PerturbationType::SkipAudioSelfAttn),
            ]
            .into_iter()
            .filter(|(g, _)| g.do_perturbed_generation())
            .map(|(g, kind)| Perturbation {
                kind,
                blocks: g.params.stg_blocks.clone(),
            })
            .collect::<Vec<_>>()
        });
        let isolated = (vg.do_isolated_modality_generation()
            || ag.do_isolated_modality_generation())
        .then(|| {
            [
                PerturbationType::SkipA2vCrossAttn,
                PerturbationType::SkipV2aCrossAttn,
            ]
            .map(|kind| Perturbation { kind, blocks: None })
            .to_vec()
        });
        // cond, negative, perturbed and isolated passes, in this order, each leaving a skipped
        // modality out (1.2.0 batches them with `enabled = not skip`; 1.0.0 ran the negative pass
        // on both)
        let some = (!skip_v, !skip_a);
        let mut specs = vec![PassSpec {
            contexts: positive,
            perturbations: None,
            enabled: some,
        }];
        let neg_at = push_pass(
            &mut specs,
            negative.map(|contexts| PassSpec {
                contexts,
                perturbations: None,
                enabled: some,
            }),
        );
        let ptb_at = push_pass(
            &mut specs,
            stg.map(|list| PassSpec {
                contexts: positive,
                perturbations: Some(list),
                enabled: some,
            }),
        );
        let iso_at = push_pass(
            &mut specs,
            isolated.map(|list| PassSpec {
                contexts: positive,
                perturbations: Some(list),
                enabled: some,
            }),
        );
        let outs = run_passes(t, states, &specs, &sigma_t, self.batch_passes)?;
        let take = |at: Option<usize>| at.map(|i| outs[i].clone());
        let (cond, neg, ptb, iso) = (outs[0].clone(), take(neg_at), take(ptb_at), take(iso_at));

        let guided = |skip: bool, g: &MultiModalGuider, video: bool| -> Result<Tensor> {
            if skip {
                let last = self.last.as_ref().ok_or_else(missing_last)?;
                return Ok(if video {
                    last.0.clone()
                } else {
                    last.1.clone()
                });
            }
            let c = if video { &cond.0 } else { &cond.1 };
            Ok(g.calculate(c, pick(&neg, video), pick(&ptb, video), pick(&iso, video))?)
        };
        let dv = guided(skip_v, &vg, true)?;
        let da = guided(skip_a, &ag, false)?;
        self.last = Some((dv.clone(), da.clone()));
        Ok((dv, da))
    }
}

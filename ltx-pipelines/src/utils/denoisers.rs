//! Port of `ltx_pipelines/utils/denoisers.py`: the denoising functions a stage's loop calls each
//! step — one conditional pass, a CFG-style guider, and the multimodal guider (negative prompt,
//! STG, isolated modalities, sigma bins).

use candle_core::{DType, Tensor};
use ltx_core::components::guiders::{Guider, MultiModalGuider, MultiModalGuiderFactory, Uncond};
use ltx_core::guidance::perturbations::{
    BatchedPerturbationConfig, Perturbation, PerturbationConfig, PerturbationType,
};
use ltx_core::model::transformer::model::X0Model;

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
        let all = (&sigma_t, (true, true));
        let cond = pass(t, states, positive, (&sigma_t, (!skip_v, !skip_a)), None)?;

        let mut neg = None;
        if vg.do_unconditional_generation() || ag.do_unconditional_generation() {
            let need = |g: &MultiModalGuider| {
                g.do_unconditional_generation() && g.negative_context.is_none()
            };
            if need(&vg) || need(&ag) {
                return Err(Error::InvalidArgument(
                    "classifier-free guidance needs a negative prompt context".into(),
                ));
            }
            let negative = (
                vg.negative_context.as_ref().unwrap_or(positive.0),
                ag.negative_context.as_ref().unwrap_or(positive.1),
            );
            neg = Some(pass(t, states, negative, all, None)?);
        }

        // the STG and isolated-modality passes: the positive pass under perturbations
        let perturbed_pass = |list: Vec<Perturbation>| {
            let cfg = BatchedPerturbationConfig::new(vec![PerturbationConfig::new(list)]);
            pass(
                t,
                states,
                positive,
                (&sigma_t, (!skip_v, !skip_a)),
                Some(&cfg),
            )
        };
        let mut ptb = None;
        if vg.do_perturbed_generation() || ag.do_perturbed_generation() {
            let mut list = Vec::new();
            for (g, kind) in [
                (&vg, PerturbationType::SkipVideoSelfAttn),
                (&ag, PerturbationType::SkipAudioSelfAttn),
            ] {
                if g.do_perturbed_generation() {
                    let blocks = g.params.stg_blocks.clone();
                    list.push(Perturbation { kind, blocks });
                }
            }
            ptb = Some(perturbed_pass(list)?);
        }
        let mut iso = None;
        if vg.do_isolated_modality_generation() || ag.do_isolated_modality_generation() {
            let kinds = [
                PerturbationType::SkipA2vCrossAttn,
                PerturbationType::SkipV2aCrossAttn,
            ];
            let list = kinds.map(|kind| Perturbation { kind, blocks: None });
            iso = Some(perturbed_pass(list.to_vec())?);
        }

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

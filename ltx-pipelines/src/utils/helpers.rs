//! Port of the denoising half of `ltx_pipelines/utils/helpers.py`: input checks, the initial
//! noised states, the denoising functions (plain, CFG-style guider, multimodal guider with sigma
//! bins) and `denoise_audio_video`.

use std::collections::VecDeque;

use candle_core::{DType, Device, Tensor};
use ltx_core::components::guiders::{Guider, MultiModalGuiderFactory, Uncond};
use ltx_core::components::noisers::{GaussianNoiser, NoiseGenerator};
use ltx_core::components::patchifiers::{AudioPatchifier, VideoLatentPatchifier};
use ltx_core::conditioning::ConditioningItem;
use ltx_core::guidance::perturbations::{
    BatchedPerturbationConfig, Perturbation, PerturbationConfig, PerturbationType,
};
use ltx_core::model::transformer::modality::Modality;
use ltx_core::model::transformer::model::X0Model;
use ltx_core::tools::{AudioLatentTools, LatentTools, VideoLatentTools};
use ltx_core::types::{
    AudioLatentParams, AudioLatentShape, LatentState, SpatioTemporalScaleFactors, VideoLatentShape,
    VideoPixelShape,
};
use ltx_core::utils::Sigma;

use super::constants::VIDEO_LATENT_CHANNELS;
use super::samplers::timesteps_from_mask;
use crate::{Error, Result};

/// The reference's `assert_resolution`: height and width multiples of 32 (one-stage) or 64
/// (two-stage, whose first stage runs at half size).
pub fn assert_resolution(height: usize, width: usize, two_stage: bool) -> Result<()> {
    let d = if two_stage { 64 } else { 32 };
    if height == 0 || width == 0 || height % d != 0 || width % d != 0 {
        return Err(Error::InvalidArgument(format!(
            "resolution {height}x{width} is not divisible by {d}: {} pipelines need height and \
             width that are positive multiples of {d}",
            if two_stage { "two-stage" } else { "one-stage" }
        )));
    }
    Ok(())
}

/// Frame counts the video VAE can produce: `8k + 1`.
pub fn assert_num_frames(num_frames: usize) -> Result<()> {
    if num_frames == 0 || (num_frames - 1) % 8 != 0 {
        let lo = num_frames.saturating_sub(1) / 8 * 8 + 1;
        return Err(Error::InvalidArgument(format!(
            "{num_frames} frames: the frame count must be 8k + 1 (e.g. {lo} or {})",
            lo + 8
        )));
    }
    Ok(())
}

/// A source of Gaussian noise for the noiser and the SDE samplers.
pub trait NoiseSource {
    fn randn(&mut self, shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor>;
}

impl NoiseSource for NoiseGenerator {
    fn randn(&mut self, shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
        Ok(NoiseGenerator::randn(self, shape, dtype, device)?)
    }
}

/// Replays recorded noise tensors in order (fixtures, or noise chosen by the caller).
#[derive(Debug, Default)]
pub struct ReplayNoise {
    queue: VecDeque<Tensor>,
}

impl ReplayNoise {
    pub fn new(tensors: impl IntoIterator<Item = Tensor>) -> Self {
        Self {
            queue: tensors.into_iter().collect(),
        }
    }

    pub fn remaining(&self) -> usize {
        self.queue.len()
    }
}

impl NoiseSource for ReplayNoise {
    fn randn(&mut self, shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
        let t = self.queue.pop_front().ok_or_else(|| {
            Error::InvalidArgument(format!("no recorded noise left for a draw of {shape:?}"))
        })?;
        if t.dims() != shape {
            return Err(Error::InvalidArgument(format!(
                "recorded noise has shape {:?}, the draw wants {shape:?}",
                t.dims()
            )));
        }
        Ok(t.to_dtype(dtype)?.to_device(device)?)
    }
}

/// A modality of the transformer from a latent state (`modality_from_latent_state`): the state's
/// tokens, `σ` as a 0-d f32 tensor, per-token timesteps `mask·σ`.
pub fn modality_from_latent_state(
    state: &LatentState,
    context: &Tensor,
    sigma: &Tensor,
    enabled: bool,
) -> Result<Modality> {
    Ok(Modality {
        latent: state.latent.clone(),
        sigma: sigma.clone(),
        timesteps: timesteps_from_mask(&state.denoise_mask, Sigma::Tensor(sigma))?,
        positions: state.positions.clone(),
        context: context.clone(),
        enabled,
        context_mask: None,
        attention_mask: state.attention_mask.clone(),
    })
}

/// `denoise_fn(video_state, audio_state, sigmas, step_index) -> (denoised video, denoised audio)`.
pub trait DenoisingFunc {
    fn denoise(
        &mut self,
        video: &LatentState,
        audio: &LatentState,
        sigmas: &Tensor,
        step: usize,
    ) -> Result<(Tensor, Tensor)>;
}

fn both(out: (Option<Tensor>, Option<Tensor>)) -> Result<(Tensor, Tensor)> {
    match out {
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

impl DenoisingFunc for SimpleDenoiser<'_> {
    fn denoise(
        &mut self,
        video: &LatentState,
        audio: &LatentState,
        sigmas: &Tensor,
        step: usize,
    ) -> Result<(Tensor, Tensor)> {
        let sigma = sigmas.get(step)?;
        let v = modality_from_latent_state(video, &self.video_context, &sigma, true)?;
        let a = modality_from_latent_state(audio, &self.audio_context, &sigma, true)?;
        both(self.transformer.forward(Some(&v), Some(&a), None)?)
    }
}

/// `guider_denoising_func`: a positive pass, and a negative-prompt pass combined by `guider`
/// when it is enabled.
pub struct GuiderDenoiser<'a, G: Guider> {
    pub transformer: &'a X0Model,
    pub guider: G,
    pub video_context: (Tensor, Tensor),
    pub audio_context: (Tensor, Tensor),
}

impl<G: Guider> DenoisingFunc for GuiderDenoiser<'_, G> {
    fn denoise(
        &mut self,
        video: &LatentState,
        audio: &LatentState,
        sigmas: &Tensor,
        step: usize,
    ) -> Result<(Tensor, Tensor)> {
        let sigma = sigmas.get(step)?;
        let pv = modality_from_latent_state(video, &self.video_context.0, &sigma, true)?;
        let pa = modality_from_latent_state(audio, &self.audio_context.0, &sigma, true)?;
        let (mut dv, mut da) = both(self.transformer.forward(Some(&pv), Some(&pa), None)?)?;
        if self.guider.enabled() {
            let nv = modality_from_latent_state(video, &self.video_context.1, &sigma, true)?;
            let na = modality_from_latent_state(audio, &self.audio_context.1, &sigma, true)?;
            let (ndv, nda) = both(self.transformer.forward(Some(&nv), Some(&na), None)?)?;
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
    last: Option<(Tensor, Tensor)>,
}

impl<'a> MultiModalDenoiser<'a> {
    pub fn new(
        transformer: &'a X0Model,
        video_guider: MultiModalGuiderFactory,
        audio_guider: Option<MultiModalGuiderFactory>,
        video_context: Tensor,
        audio_context: Tensor,
    ) -> Self {
        Self {
            transformer,
            video_guider,
            audio_guider,
            video_context,
            audio_context,
            last: None,
        }
    }
}

impl DenoisingFunc for MultiModalDenoiser<'_> {
    fn denoise(
        &mut self,
        video: &LatentState,
        audio: &LatentState,
        sigmas: &Tensor,
        step: usize,
    ) -> Result<(Tensor, Tensor)> {
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
        let pv = modality_from_latent_state(video, &self.video_context, &sigma_t, !skip_v)?;
        let pa = modality_from_latent_state(audio, &self.audio_context, &sigma_t, !skip_a)?;
        let (cond_v, cond_a) = both(self.transformer.forward(Some(&pv), Some(&pa), None)?)?;

        let mut neg: Option<(Tensor, Tensor)> = None;
        if vg.do_unconditional_generation() || ag.do_unconditional_generation() {
            let need = |g: &ltx_core::components::guiders::MultiModalGuider| {
                g.do_unconditional_generation() && g.negative_context.is_none()
            };
            if need(&vg) || need(&ag) {
                return Err(Error::InvalidArgument(
                    "classifier-free guidance needs a negative prompt context".into(),
                ));
            }
            let nv_ctx = vg.negative_context.as_ref().unwrap_or(&pv.context);
            let na_ctx = ag.negative_context.as_ref().unwrap_or(&pa.context);
            let nv = modality_from_latent_state(video, nv_ctx, &sigma_t, true)?;
            let na = modality_from_latent_state(audio, na_ctx, &sigma_t, true)?;
            neg = Some(both(self.transformer.forward(
                Some(&nv),
                Some(&na),
                None,
            )?)?);
        }

        let mut ptb: Option<(Tensor, Tensor)> = None;
        if vg.do_perturbed_generation() || ag.do_perturbed_generation() {
            let mut list = Vec::new();
            if vg.do_perturbed_generation() {
                list.push(Perturbation {
                    kind: PerturbationType::SkipVideoSelfAttn,
                    blocks: vg.params.stg_blocks.clone(),
                });
            }
            if ag.do_perturbed_generation() {
                list.push(Perturbation {
                    kind: PerturbationType::SkipAudioSelfAttn,
                    blocks: ag.params.stg_blocks.clone(),
                });
            }
            let cfg = BatchedPerturbationConfig::new(vec![PerturbationConfig::new(list)]);
            ptb = Some(both(self.transformer.forward(
                Some(&pv),
                Some(&pa),
                Some(&cfg),
            )?)?);
        }

        let mut iso: Option<(Tensor, Tensor)> = None;
        if vg.do_isolated_modality_generation() || ag.do_isolated_modality_generation() {
            let list = vec![
                Perturbation {
                    kind: PerturbationType::SkipA2vCrossAttn,
                    blocks: None,
                },
                Perturbation {
                    kind: PerturbationType::SkipV2aCrossAttn,
                    blocks: None,
                },
            ];
            let cfg = BatchedPerturbationConfig::new(vec![PerturbationConfig::new(list)]);
            iso = Some(both(self.transformer.forward(
                Some(&pv),
                Some(&pa),
                Some(&cfg),
            )?)?);
        }

        fn pick(o: &Option<(Tensor, Tensor)>, video: bool) -> Uncond<'_> {
            match o {
                Some((v, a)) => Uncond::Tensor(if video { v } else { a }),
                None => Uncond::Scalar(0.0),
            }
        }
        let dv = if skip_v {
            self.last.as_ref().ok_or_else(missing_last)?.0.clone()
        } else {
            vg.calculate(
                &cond_v,
                pick(&neg, true),
                pick(&ptb, true),
                pick(&iso, true),
            )?
        };
        let da = if skip_a {
            self.last.as_ref().ok_or_else(missing_last)?.1.clone()
        } else {
            ag.calculate(
                &cond_a,
                pick(&neg, false),
                pick(&ptb, false),
                pick(&iso, false),
            )?
        };
        self.last = Some((dv.clone(), da.clone()));
        Ok((dv, da))
    }
}

/// Tools of both modalities for an output shape (`PipelineComponents`: patch size 1, the default
/// scale factors and audio parameters).
pub fn latent_tools(shape: &VideoPixelShape) -> Result<(VideoLatentTools, AudioLatentTools)> {
    let vshape = VideoLatentShape::from_pixel_shape(
        shape,
        VIDEO_LATENT_CHANNELS,
        SpatioTemporalScaleFactors::default(),
    );
    let video = VideoLatentTools::new(VideoLatentPatchifier::new(1)?, vshape, shape.fps);
    let ashape = AudioLatentShape::from_video_pixel_shape(shape, AudioLatentParams::default())?;
    let audio = AudioLatentTools {
        patchifier: AudioPatchifier::new(1),
        target_shape: ashape,
    };
    Ok((video, audio))
}

/// `create_noised_state`: an initial state (zeros or `initial_latent`), the conditionings
/// applied, then noise mixed in where the denoise mask says so, scaled by `noise_scale`.
#[allow(clippy::too_many_arguments)]
pub fn create_noised_state<T: LatentTools>(
    tools: &T,
    apply: impl Fn(LatentState) -> Result<LatentState>,
    noise: &mut dyn NoiseSource,
    dtype: DType,
    device: &Device,
    noise_scale: f64,
    initial_latent: Option<&Tensor>,
) -> Result<LatentState> {
    let state = tools.create_initial_state(device, dtype, initial_latent)?;
    let state = apply(state)?;
    let n = noise.randn(state.latent.dims(), state.latent.dtype(), device)?;
    Ok(GaussianNoiser.apply(&state, &n, noise_scale)?)
}

/// The loop [`denoise_audio_video`] runs on the noised states. It is handed the noise source the
/// initial states were drawn from (a stochastic loop may keep drawing from it, or use its own).
pub trait DenoisingLoop {
    fn run(
        &mut self,
        video: LatentState,
        audio: LatentState,
        noise: &mut dyn NoiseSource,
    ) -> Result<(LatentState, LatentState)>;
}

impl<F> DenoisingLoop for F
where
    F: FnMut(LatentState, LatentState, &mut dyn NoiseSource) -> Result<(LatentState, LatentState)>,
{
    fn run(
        &mut self,
        video: LatentState,
        audio: LatentState,
        noise: &mut dyn NoiseSource,
    ) -> Result<(LatentState, LatentState)> {
        self(video, audio, noise)
    }
}

/// What conditions the audio state (the retake's time-region mask); the other pipelines leave
/// it as built.
pub type AudioConditioning<'a> = &'a dyn Fn(LatentState, &AudioLatentTools) -> Result<LatentState>;

/// The noised states of both modalities (`noise_video_state` then `noise_audio_state`: the video
/// draw comes first): `conditionings` apply to the video, `audio_conditioning` to the audio;
/// `noise_scales` = (video, audio).
#[allow(clippy::too_many_arguments)]
fn noised_states(
    output_shape: &VideoPixelShape,
    conditionings: &[Box<dyn ConditioningItem + '_>],
    audio_conditioning: Option<AudioConditioning<'_>>,
    noise: &mut dyn NoiseSource,
    dtype: DType,
    device: &Device,
    noise_scales: (f64, f64),
    initial_video_latent: Option<&Tensor>,
    initial_audio_latent: Option<&Tensor>,
) -> Result<(VideoLatentTools, LatentState, AudioLatentTools, LatentState)> {
    let (vtools, atools) = latent_tools(output_shape)?;
    let video = create_noised_state(
        &vtools,
        |mut s| {
            for c in conditionings {
                s = c.apply_to(&s, &vtools)?;
            }
            Ok(s)
        },
        noise,
        dtype,
        device,
        noise_scales.0,
        initial_video_latent,
    )?;
    let audio = create_noised_state(
        &atools,
        |s| match audio_conditioning {
            Some(f) => f(s, &atools),
            None => Ok(s),
        },
        noise,
        dtype,
        device,
        noise_scales.1,
        initial_audio_latent,
    )?;
    Ok((vtools, video, atools, audio))
}

/// `denoise_audio_video`: noised video state (with the conditionings) and audio state (none),
/// the loop, then conditioning tokens dropped and both states back in grid layout
/// (`[B, C, F, H, W]` video, `[B, C, T, mels]` audio).
#[allow(clippy::too_many_arguments)]
pub fn denoise_audio_video(
    output_shape: &VideoPixelShape,
    conditionings: &[Box<dyn ConditioningItem + '_>],
    noise: &mut dyn NoiseSource,
    denoising_loop: &mut dyn DenoisingLoop,
    dtype: DType,
    device: &Device,
    noise_scale: f64,
    initial_video_latent: Option<&Tensor>,
    initial_audio_latent: Option<&Tensor>,
) -> Result<(LatentState, LatentState)> {
    denoise_conditioned_audio_video(
        output_shape,
        (conditionings, None),
        noise,
        denoising_loop,
        dtype,
        device,
        noise_scale,
        initial_video_latent,
        initial_audio_latent,
    )
}

/// [`denoise_audio_video`] with the audio state conditioned too (`conditionings` = video items,
/// audio conditioning).
#[allow(clippy::too_many_arguments)]
pub fn denoise_conditioned_audio_video(
    output_shape: &VideoPixelShape,
    (conditionings, audio_conditioning): (
        &[Box<dyn ConditioningItem + '_>],
        Option<AudioConditioning<'_>>,
    ),
    noise: &mut dyn NoiseSource,
    denoising_loop: &mut dyn DenoisingLoop,
    dtype: DType,
    device: &Device,
    noise_scale: f64,
    initial_video_latent: Option<&Tensor>,
    initial_audio_latent: Option<&Tensor>,
) -> Result<(LatentState, LatentState)> {
    let (vtools, video, atools, audio) = noised_states(
        output_shape,
        conditionings,
        audio_conditioning,
        noise,
        dtype,
        device,
        (noise_scale, noise_scale),
        initial_video_latent,
        initial_audio_latent,
    )?;
    let (video, audio) = denoising_loop.run(video, audio, noise)?;
    let video = vtools.unpatchify(&vtools.clear_conditioning(&video)?)?;
    let audio = atools.unpatchify(&atools.clear_conditioning(&audio)?)?;
    Ok((video, audio))
}

/// `denoise_video_only`: like [`denoise_audio_video`], but the audio is given (`initial_audio_latent`,
/// e.g. an encoded soundtrack) and kept: its state is built with noise scale 0 (the draw still
/// happens, as in the reference) and a zero denoise mask, so the transformer sees it clean at every
/// step. Returns the video state in grid layout.
#[allow(clippy::too_many_arguments)]
pub fn denoise_video_only(
    output_shape: &VideoPixelShape,
    conditionings: &[Box<dyn ConditioningItem + '_>],
    noise: &mut dyn NoiseSource,
    denoising_loop: &mut dyn DenoisingLoop,
    dtype: DType,
    device: &Device,
    noise_scale: f64,
    initial_video_latent: Option<&Tensor>,
    initial_audio_latent: Option<&Tensor>,
) -> Result<LatentState> {
    let (vtools, video, _, mut audio) = noised_states(
        output_shape,
        conditionings,
        None,
        noise,
        dtype,
        device,
        (noise_scale, 0.0),
        initial_video_latent,
        initial_audio_latent,
    )?;
    audio.denoise_mask = audio.denoise_mask.zeros_like()?;
    let (video, _) = denoising_loop.run(video, audio, noise)?;
    Ok(vtools.unpatchify(&vtools.clear_conditioning(&video)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_checks() {
        assert!(assert_resolution(512, 768, true).is_ok());
        assert!(assert_resolution(480, 704, false).is_ok());
        let e = assert_resolution(480, 704, true).unwrap_err().to_string();
        assert!(e.contains("divisible by 64"), "{e}");
        assert!(assert_resolution(0, 64, false).is_err());
        assert!(assert_num_frames(121).is_ok());
        assert!(assert_num_frames(1).is_ok());
        let e = assert_num_frames(120).unwrap_err().to_string();
        assert!(
            e.contains("8k + 1") && e.contains("113") && e.contains("121"),
            "{e}"
        );
        assert!(assert_num_frames(0).is_err());
    }

    #[test]
    fn replay_noise_checks_shapes() {
        let mut r = ReplayNoise::new([Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap()]);
        assert!(r.randn(&[3, 2], DType::F32, &Device::Cpu).is_err());
        assert_eq!(r.remaining(), 0);
        assert!(r.randn(&[2, 3], DType::F32, &Device::Cpu).is_err());
    }
}

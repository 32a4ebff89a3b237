//! Port of `ltx_pipelines/utils/helpers.py`: the input checks, image conditionings, the
//! modality a latent state feeds the transformer, the initial noised states and
//! `denoise_audio_video` (noised states → a denoising loop → grid-layout latents).

use candle_core::{DType, Device, Tensor};
use ltx_core::components::noisers::GaussianNoiser;
use ltx_core::components::patchifiers::{AudioPatchifier, VideoLatentPatchifier};
use ltx_core::conditioning::{
    ConditioningItem, VideoConditionByKeyframeIndex, VideoConditionByLatentIndex,
};
use ltx_core::model::transformer::modality::Modality;
use ltx_core::model::transformer::ContextKey;
use ltx_core::model::video_vae::VideoEncoder;
use ltx_core::tools::{AudioLatentTools, LatentTools, VideoLatentTools};
use ltx_core::types::{
    AudioLatentParams, AudioLatentShape, LatentState, SpatioTemporalScaleFactors, VideoLatentShape,
    VideoPixelShape,
};
use ltx_core::utils::{
    check_broadcasts_to, check_same_shape, mul_scalar, rsub_scalar, torch_binary, Sigma,
};

use super::constants::VIDEO_LATENT_CHANNELS;
use super::request::ImageConditioningInput;
use super::types::{DenoisingLoop, NoiseSource};
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

/// How images condition a stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageConditioningMode {
    /// `combined_image_conditionings`: frame 0 replaces latent frame 0, other frames are keyframes.
    Combined,
    /// `image_conditionings_by_adding_guiding_latent`: every image is an appended keyframe (the
    /// keyframe-interpolation pipeline).
    Keyframes,
}

/// Image conditionings of a stage in `mode`: each image loaded at `height` x `width` (after its
/// CRF round trip — `default_crf` for an image without one), encoded by `encoder` and cast to
/// `dtype` on `device`.
#[allow(clippy::too_many_arguments)]
pub fn image_conditionings(
    mode: ImageConditioningMode,
    images: &[ImageConditioningInput],
    default_crf: u32,
    (height, width): (usize, usize),
    encoder: &VideoEncoder,
    dtype: DType,
    device: &Device,
) -> Result<Vec<Box<dyn ConditioningItem>>> {
    let mut out: Vec<Box<dyn ConditioningItem>> = Vec::new();
    for img in images {
        let pixels = crate::media::image::load_image_conditioning(
            &img.path,
            height,
            width,
            img.crf.unwrap_or(default_crf) as f64,
        )?
        .to_dtype(dtype)?
        .to_device(device)?;
        let latent = encoder.forward(&pixels)?;
        if img.frame_idx == 0 && mode == ImageConditioningMode::Combined {
            out.push(Box::new(VideoConditionByLatentIndex::new(
                latent,
                img.strength,
                0,
            )?));
        } else {
            out.push(Box::new(VideoConditionByKeyframeIndex::new(
                latent,
                img.frame_idx,
                img.strength,
            )?));
        }
    }
    Ok(out)
}

/// A modality of the transformer from a latent state (`modality_from_latent_state`): the state's
/// tokens, `σ` as a 0-d f32 tensor, per-token timesteps `mask·σ`.
pub fn modality_from_latent_state(
    state: &LatentState,
    context: &Tensor,
    sigma: &Tensor,
    enabled: bool,
) -> Result<Modality> {
    // a frozen stream is shown sigma 0 (its tokens' timesteps are 0 through the mask already)
    let sigma = if state.frozen {
        &sigma.zeros_like()?
    } else {
        sigma
    };
    Ok(Modality {
        latent: state.latent.clone(),
        sigma: sigma.clone(),
        timesteps: timesteps_from_mask(&state.denoise_mask, Sigma::Tensor(sigma))?,
        positions: state.positions.clone(),
        context: context.clone(),
        enabled,
        context_mask: None,
        attention_mask: state.attention_mask.clone(),
        keyframes_mask: state.keyframes_mask.clone(),
        // the same prompt tensor at every step: its text keys and values can be cached
        context_key: Some(ContextKey::of(context)),
    })
}

/// `denoised·m + clean·(1 − m)` (the reference's `post_process_latent`): conditioned tokens
/// (mask 0) keep their clean values. As in the reference `clean` is taken in f32, each product in
/// its promoted dtype (`denoised·m`: e.g. f32 for bf16 × f32, f64 for f64 × f32), the sum in the
/// wider of the two, and the result is cast to `denoised`'s dtype. `clean` has `denoised`'s shape,
/// the mask broadcasts to it (`[B, T, 1]` for `[B, T, C]`).
pub fn post_process_latent(
    denoised: &Tensor,
    denoise_mask: &Tensor,
    clean: &Tensor,
) -> Result<Tensor> {
    check_same_shape("clean latent", clean.dims(), denoised.dims())?;
    check_broadcasts_to("denoise mask", denoise_mask.dims(), denoised.dims())?;
    let kept = torch_binary(denoised, denoise_mask, Tensor::broadcast_mul)?;
    let clean = clean.to_dtype(DType::F32)?;
    let restored = torch_binary(
        &clean,
        &rsub_scalar(1.0, denoise_mask)?,
        Tensor::broadcast_mul,
    )?;
    Ok(torch_binary(&kept, &restored, Tensor::broadcast_add)?.to_dtype(denoised.dtype())?)
}

/// Per-token timesteps `denoise_mask · σ` (the reference's `timesteps_from_mask`): in the mask's
/// dtype for a float or 0-d sigma, else in the promoted dtype.
pub fn timesteps_from_mask(denoise_mask: &Tensor, sigma: Sigma) -> Result<Tensor> {
    Ok(match sigma {
        Sigma::Value(v) => mul_scalar(denoise_mask, v)?,
        Sigma::Tensor(t) => torch_binary(denoise_mask, t, Tensor::broadcast_mul)?,
    })
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

/// What conditions the audio state (the retake's time-region mask).
pub type AudioConditioning<'a> = &'a dyn Fn(LatentState, &AudioLatentTools) -> Result<LatentState>;

/// How a stage builds its audio state.
#[derive(Clone, Copy)]
pub enum StageAudio<'a> {
    /// Generated: zeros, or `initial` (e.g. the stage-1 audio) noised at the stage's noise scale,
    /// after `conditioning` (when given) has set its denoise mask.
    Generate {
        initial: Option<&'a Tensor>,
        conditioning: Option<AudioConditioning<'a>>,
    },
    /// Given and kept clean (`denoise_video_only`, audio-to-video): the state is built with noise
    /// scale 0 (the draw still happens, as in the reference) and a zero denoise mask, so the
    /// transformer sees it unchanged at every step.
    Keep(&'a Tensor),
}

impl StageAudio<'_> {
    /// Generated from zeros, unconditioned.
    pub const FRESH: StageAudio<'static> = StageAudio::Generate {
        initial: None,
        conditioning: None,
    };
}

/// The noised states a stage starts from: `conditionings` apply to the video, `audio` says how
/// the audio state is made.
#[derive(Clone, Copy)]
pub struct StageInputs<'a> {
    pub shape: &'a VideoPixelShape,
    pub conditionings: &'a [Box<dyn ConditioningItem + 'a>],
    /// Scales the noise mixed into the states (1 for a stage from pure noise, the first sigma
    /// for a refinement stage).
    pub noise_scale: f64,
    /// `None`: start from zeros.
    pub initial_video: Option<&'a Tensor>,
    pub audio: StageAudio<'a>,
    pub dtype: DType,
    pub device: &'a Device,
}

/// `denoise_audio_video`: the noised video state (conditioned) and audio state, drawn in that
/// order from `noise` (`noise_video_state` then `noise_audio_state`), the loop, then the
/// conditioning tokens dropped and both states back in grid layout (`[B, C, F, H, W]` video,
/// `[B, C, T, mels]` audio).
pub fn denoise_audio_video(
    inputs: &StageInputs<'_>,
    noise: &mut dyn NoiseSource,
    denoising_loop: &mut dyn DenoisingLoop,
) -> Result<(LatentState, LatentState)> {
    let (vtools, atools) = latent_tools(inputs.shape)?;
    let video = create_noised_state(
        &vtools,
        |mut s| {
            for c in inputs.conditionings {
                s = c.apply_to(&s, &vtools)?;
            }
            Ok(s)
        },
        noise,
        inputs.dtype,
        inputs.device,
        inputs.noise_scale,
        inputs.initial_video,
    )?;
    let (initial_audio, conditioning, audio_scale) = match inputs.audio {
        StageAudio::Generate {
            initial,
            conditioning,
        } => (initial, conditioning, inputs.noise_scale),
        StageAudio::Keep(latent) => (Some(latent), None, 0.0),
    };
    let mut audio = create_noised_state(
        &atools,
        |s| match conditioning {
            Some(f) => f(s, &atools),
            None => Ok(s),
        },
        noise,
        inputs.dtype,
        inputs.device,
        audio_scale,
        initial_audio,
    )?;
    if let StageAudio::Keep(_) = inputs.audio {
        audio.denoise_mask = audio.denoise_mask.zeros_like()?;
        audio.frozen = true;
    }
    let (video, audio) = denoising_loop.run(video, audio, noise)?;
    let video = vtools.unpatchify(&vtools.clear_conditioning(&video)?)?;
    let audio = atools.unpatchify(&atools.clear_conditioning(&audio)?)?;
    Ok((video, audio))
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
}

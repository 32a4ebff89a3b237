//! What every pipeline shares (the stage-level halves of `ltx_pipelines/utils/helpers.py` and the
//! pipelines' common argument types): progress events, the request and its checks, prompt encoding,
//! image conditionings, the Euler stage loop, streamed video decoding and audio decoding.

use candle_core::{DType, Tensor};
use ltx_core::conditioning::ConditioningItem;
use ltx_core::model::audio_vae::decode_audio;
use ltx_core::model::video_vae::decoder::to_uint8_frames;
use ltx_core::model::video_vae::{DecodeInputs, TilingConfig};
use ltx_core::text_encoders::gemma::PaddingSide;
use ltx_core::types::{Audio, LatentState};

use super::helpers::{assert_num_frames, assert_resolution, DenoisingFunc, NoiseSource};
use super::model_ledger::ModelLedger;
use super::samplers::euler_denoising_loop;
use crate::{Error, Result};

/// What a pipeline reports while it runs.
#[derive(Clone, Debug, PartialEq)]
pub enum ProgressEvent {
    /// A stage starts; `total` steps (0: no step count).
    Stage { name: &'static str, total: usize },
    /// `done` of the stage's `total` steps are finished.
    Step { done: usize, total: usize },
    /// Gemma rewrote the prompt (`--enhance-prompt`); the generation uses this text.
    EnhancedPrompt(String),
}

/// Prompt enhancement (`enhance_prompt` of the reference's pipelines): Gemma rewrites the first
/// prompt before it is encoded.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PromptEnhancement {
    /// Instructions for Gemma (default: `DEFAULT_T2V_SYSTEM_PROMPT`).
    pub system_prompt: Option<String>,
    /// An image the reference would show Gemma (its first conditioning image). Gemma's vision
    /// tower is not ported: the prompt is enhanced from the text alone, with a warning.
    pub image: Option<std::path::PathBuf>,
}

/// An image that conditions one frame (`--image PATH FRAME_IDX STRENGTH [CRF]`).
#[derive(Clone, Debug, PartialEq)]
pub struct ImageConditioningInput {
    pub path: std::path::PathBuf,
    pub frame_idx: usize,
    pub strength: f64,
    pub crf: u32,
}

/// The inputs of one generation.
#[derive(Clone, Debug)]
pub struct GenerationRequest {
    pub prompt: String,
    pub seed: u64,
    pub height: usize,
    pub width: usize,
    pub num_frames: usize,
    pub frame_rate: f64,
    pub images: Vec<ImageConditioningInput>,
    /// `None`: decode in one piece.
    pub tiling: Option<TilingConfig>,
    /// `Some`: Gemma rewrites the prompt first (sampled with `seed`).
    pub enhance_prompt: Option<PromptEnhancement>,
}

impl GenerationRequest {
    /// The enhancement to apply to this request's prompt, with its first image (as the
    /// reference's `enhance_prompt_image`).
    pub fn enhancement(&self) -> Option<PromptEnhancement> {
        self.enhance_prompt.as_ref().map(|e| PromptEnhancement {
            image: e
                .image
                .clone()
                .or_else(|| self.images.first().map(|i| i.path.clone())),
            ..e.clone()
        })
    }

    /// The output shape at `1 / divisor` of the requested height and width (2 for the first stage
    /// of the two-stage pipelines, 1 for full size).
    pub fn pixel_shape(&self, divisor: usize) -> ltx_core::types::VideoPixelShape {
        ltx_core::types::VideoPixelShape {
            batch: 1,
            frames: self.num_frames,
            height: self.height / divisor,
            width: self.width / divisor,
            fps: self.frame_rate,
        }
    }

    /// The checks every pipeline makes before any model is loaded.
    pub fn validate(&self, two_stage: bool) -> Result<()> {
        assert_resolution(self.height, self.width, two_stage)?;
        assert_num_frames(self.num_frames)?;
        if !(self.frame_rate.is_finite() && self.frame_rate > 0.0) {
            return Err(Error::InvalidArgument(format!(
                "frame rate {} must be a positive number",
                self.frame_rate
            )));
        }
        if self.prompt.trim().is_empty() {
            return Err(Error::InvalidArgument("the prompt is empty".into()));
        }
        for img in &self.images {
            if img.frame_idx >= self.num_frames {
                return Err(Error::InvalidArgument(format!(
                    "image `{}` conditions frame {}, but the video has {} frames",
                    img.path.display(),
                    img.frame_idx,
                    self.num_frames
                )));
            }
            if !(0.0..=1.0).contains(&img.strength) {
                return Err(Error::InvalidArgument(format!(
                    "image `{}`: strength {} is outside [0, 1]",
                    img.path.display(),
                    img.strength
                )));
            }
            if !img.path.is_file() {
                return Err(Error::InvalidArgument(format!(
                    "image `{}` does not exist",
                    img.path.display()
                )));
            }
        }
        Ok(())
    }
}

/// Video and audio contexts of each prompt (`encode_prompts`): Gemma encodes every prompt and is
/// freed, then the embeddings processor runs and is freed. With `enhance`, Gemma first rewrites
/// the first prompt (sampling seeded with `seed`), reported as [`ProgressEvent::EnhancedPrompt`].
pub fn encode_prompts(
    ledger: &ModelLedger,
    prompts: &[&str],
    enhance: Option<&PromptEnhancement>,
    seed: u64,
    progress: &mut dyn FnMut(ProgressEvent),
) -> Result<Vec<(Tensor, Tensor)>> {
    let hidden = {
        let encoder = ledger.text_encoder()?;
        let mut prompts: Vec<String> = prompts.iter().map(|p| p.to_string()).collect();
        if let (Some(e), Some(first)) = (enhance, prompts.first_mut()) {
            if let Some(img) = &e.image {
                tracing::warn!(
                    image = %img.display(),
                    "Gemma's vision tower is not ported: the prompt is enhanced from its text only"
                );
            }
            let cfg = ltx_core::text_encoders::gemma::SamplingConfig::for_enhancement(&encoder);
            progress(ProgressEvent::Stage {
                name: "enhance prompt",
                total: cfg.max_new_tokens,
            });
            let total = cfg.max_new_tokens;
            let text = encoder.enhance_t2v(first, e.system_prompt.as_deref(), seed, |done| {
                progress(ProgressEvent::Step { done, total })
            })?;
            progress(ProgressEvent::EnhancedPrompt(text.clone()));
            *first = text;
        }
        progress(ProgressEvent::Stage {
            name: "text encoder",
            total: prompts.len(),
        });
        let mut out = Vec::with_capacity(prompts.len());
        for (i, p) in prompts.iter().enumerate() {
            out.push(encoder.encode_stacked(p)?);
            progress(ProgressEvent::Step {
                done: i + 1,
                total: prompts.len(),
            });
        }
        out
    };
    let processor = ledger.embeddings_processor()?;
    hidden
        .iter()
        .map(|(h, m)| {
            let out = processor.process_hidden_states(h, m, PaddingSide::Left)?;
            let audio = out.audio_encoding.ok_or_else(|| {
                Error::InvalidArgument("the checkpoint has no audio text connector".into())
            })?;
            Ok((
                out.video_encoding.to_dtype(ledger.dtype)?,
                audio.to_dtype(ledger.dtype)?,
            ))
        })
        .collect()
}

/// [`encode_prompts`] for a request's prompt alone (the distilled pipelines: no negative prompt).
pub fn encode_prompt(
    ledger: &ModelLedger,
    req: &GenerationRequest,
    progress: &mut dyn FnMut(ProgressEvent),
) -> Result<(Tensor, Tensor)> {
    let enhance = req.enhancement();
    let mut v = encode_prompts(
        ledger,
        &[req.prompt.as_str()],
        enhance.as_ref(),
        req.seed,
        progress,
    )?;
    Ok(v.remove(0))
}

/// Image conditionings of one stage: a frame-0 image replaces latent frame 0, later frames become
/// keyframe tokens (`combined_image_conditionings`).
pub fn image_conditionings(
    images: &[ImageConditioningInput],
    height: usize,
    width: usize,
    encoder: &ltx_core::model::video_vae::VideoEncoder,
    dtype: DType,
    device: &candle_core::Device,
) -> Result<Vec<Box<dyn ConditioningItem>>> {
    conditionings(
        ImageConditioningMode::Combined,
        images,
        height,
        width,
        encoder,
        dtype,
        device,
    )
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

/// Image conditionings of a stage in `mode`.
pub fn conditionings(
    mode: ImageConditioningMode,
    images: &[ImageConditioningInput],
    height: usize,
    width: usize,
    encoder: &ltx_core::model::video_vae::VideoEncoder,
    dtype: DType,
    device: &candle_core::Device,
) -> Result<Vec<Box<dyn ConditioningItem>>> {
    use ltx_core::conditioning::{VideoConditionByKeyframeIndex, VideoConditionByLatentIndex};
    let mut out: Vec<Box<dyn ConditioningItem>> = Vec::new();
    for img in images {
        let pixels =
            crate::media::image::load_image_conditioning(&img.path, height, width, img.crf as f64)?
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

/// Between the stages of the two-stage pipelines: the stage-1 video latent (first batch element)
/// upsampled x2 in latent space (with the encoder's latent statistics), and the image
/// conditionings re-encoded at the full size. The encoder comes from `encoder_ledger`, the
/// upsampler from `upsampler_ledger` (the reference's stage-1 and stage-2 ledgers).
#[allow(clippy::too_many_arguments)]
pub fn upsample_for_stage_2(
    encoder_ledger: &ModelLedger,
    upsampler_ledger: &ModelLedger,
    stage_1_video: &Tensor,
    mode: ImageConditioningMode,
    images: &[ImageConditioningInput],
    height: usize,
    width: usize,
    progress: &mut dyn FnMut(ProgressEvent),
) -> Result<(Tensor, Vec<Box<dyn ConditioningItem>>)> {
    progress(ProgressEvent::Stage {
        name: "upsample",
        total: 0,
    });
    let encoder = encoder_ledger.video_encoder()?;
    let upscaled = {
        let upsampler = upsampler_ledger.spatial_upsampler()?;
        ltx_core::model::upsampler::upsample_video(
            &stage_1_video.narrow(0, 0, 1)?,
            encoder.per_channel_statistics(),
            &upsampler,
        )?
    };
    let conds = conditionings(
        mode,
        images,
        height,
        width,
        &encoder,
        encoder_ledger.dtype,
        &encoder_ledger.device,
    )?;
    Ok((upscaled, conds))
}

/// Decodes a video latent `[1, 128, F', H', W']` into `[f, H, W, 3]` u8 chunks handed to `sink`.
pub fn decode_video_chunks(
    ledger: &ModelLedger,
    latent: &Tensor,
    tiling: Option<&TilingConfig>,
    progress: &mut dyn FnMut(ProgressEvent),
    sink: &mut dyn FnMut(Tensor) -> Result<()>,
) -> Result<()> {
    if let Some(backend) = &ledger.video_decoder_backend {
        if tiling.is_some() {
            return Err(Error::InvalidArgument(format!(
                "tiled decoding is not available with the {} video decoder (it decodes one fixed \
                 shape)",
                backend.0.name()
            )));
        }
        progress(ProgressEvent::Stage {
            name: "video decode",
            total: 1,
        });
        let video = backend.0.decode(&latent.to_dtype(DType::F32)?)?;
        sink(to_uint8_frames(&video)?)?;
        progress(ProgressEvent::Step { done: 1, total: 1 });
        return Ok(());
    }
    let decoder = ledger.video_decoder()?;
    let latent = latent.to_dtype(ledger.dtype)?;
    match tiling {
        Some(cfg) => {
            let frames = 1 + (latent.dim(2)? - 1) * 8;
            let total = cfg.video_chunks(frames);
            progress(ProgressEvent::Stage {
                name: "video decode",
                total,
            });
            let mut done = 0;
            let mut err: Option<Error> = None;
            decoder
                .tiled_decode(&latent, cfg, None, None, |chunk| {
                    done += 1;
                    progress(ProgressEvent::Step { done, total });
                    match to_uint8_frames(&chunk)
                        .map_err(Error::from)
                        .and_then(&mut *sink)
                    {
                        Ok(()) => Ok(()),
                        Err(e) => {
                            err = Some(e);
                            Err(ltx_core::Error::InvalidInput("output sink failed".into()))
                        }
                    }
                })
                .map_err(|e| err.take().unwrap_or(Error::Core(e)))?;
        }
        None => {
            progress(ProgressEvent::Stage {
                name: "video decode",
                total: 1,
            });
            let video = decoder.forward(&latent, DecodeInputs::default())?;
            sink(to_uint8_frames(&video)?)?;
            progress(ProgressEvent::Step { done: 1, total: 1 });
        }
    }
    Ok(())
}

/// Waveform -> audio latent `[1, 8, T, 16]` in the ledger's dtype: the checkpoint's audio
/// processor (resampling + log-mel) then the audio VAE encoder (`encode_audio`).
pub fn encode_audio_waveform(ledger: &ModelLedger, audio: &Audio) -> Result<Tensor> {
    use ltx_core::model::audio_vae::ops::AudioProcessor;
    use ltx_core::model::audio_vae::{encode_audio, AudioVaeConfig};
    let cfg = AudioVaeConfig::from_checkpoint_config(&ledger.config()?)?;
    let encoder = ledger.audio_encoder()?;
    let mel_bins = cfg
        .mel_bins
        .ok_or_else(|| Error::InvalidArgument("the audio VAE config has no mel_bins".into()))?;
    let processor = AudioProcessor::new(
        cfg.sample_rate,
        mel_bins,
        cfg.mel_hop_length,
        cfg.n_fft,
        &ledger.device,
    )?;
    let audio = Audio {
        waveform: audio.waveform.to_device(&ledger.device)?,
        sampling_rate: audio.sampling_rate,
    };
    Ok(encode_audio(&audio, &encoder, &processor)?.to_dtype(ledger.dtype)?)
}

/// Audio latent `[1, 8, T, 16]` -> stereo waveform at the vocoder's rate.
pub fn decode_audio_latent(
    ledger: &ModelLedger,
    latent: &Tensor,
    progress: &mut dyn FnMut(ProgressEvent),
) -> Result<Audio> {
    progress(ProgressEvent::Stage {
        name: "audio decode",
        total: 0,
    });
    let decoder = ledger.audio_decoder()?;
    let vocoder = ledger.vocoder()?;
    Ok(decode_audio(
        &latent.to_dtype(ledger.dtype)?,
        &decoder,
        &vocoder,
    )?)
}

/// A denoising loop for [`denoise_audio_video`]: Euler over `sigmas` with `denoiser`, reporting
/// each step.
pub fn euler_stage<'a>(
    sigmas: &'a Tensor,
    denoiser: &'a mut dyn DenoisingFunc,
    progress: &'a mut dyn FnMut(ProgressEvent),
) -> impl FnMut(LatentState, LatentState, &mut dyn NoiseSource) -> Result<(LatentState, LatentState)> + 'a
{
    move |v, a, _noise: &mut dyn NoiseSource| {
        euler_denoising_loop(sigmas, v, a, &mut *denoiser, &mut |done, total| {
            progress(ProgressEvent::Step { done, total })
        })
    }
}

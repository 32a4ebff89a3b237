//! Port of `ltx_pipelines/retake.py`: regenerate a time window of an existing video (and its
//! soundtrack) from a prompt while everything outside the window is kept.
//!
//! The source video (and its audio track, when it has one) is encoded to latents that start the
//! denoising; a [`TemporalRegionMask`] sets the denoise mask to 1 on the tokens that overlap
//! `[start_time, end_time)` and to 0 elsewhere, so only that window is re-generated. The dev mode
//! runs the LTX-2 schedule with multimodal guidance against a negative prompt; the distilled mode
//! runs the 8 distilled sigmas without guidance. Output size, frame count and frame rate are the
//! source's.

use std::path::PathBuf;

use candle_core::{DType, Tensor};
use ltx_core::components::noisers::NoiseKind;
use ltx_core::components::schedulers::Ltx2Scheduler;
use ltx_core::conditioning::ConditioningItem;
pub use ltx_core::conditioning::TemporalRegionMask;
use ltx_core::model::video_vae::TilingConfig;
use ltx_core::tools::AudioLatentTools;
use ltx_core::types::{Audio, AudioLatentParams, AudioLatentShape, LatentState, VideoPixelShape};

use crate::media::{decode_audio_file, load_video_conditioning, probe_mp4};
use crate::utils::blocks::{
    decode_outputs, encode_audio_waveform, encode_prompts, ConditioningEncoder,
};
use crate::utils::constants::DISTILLED_SIGMA_VALUES;
use crate::utils::denoisers::{DenoisingFunc, MultiModalDenoiser, SimpleDenoiser};
use crate::utils::helpers::{StageAudio, StageInputs};
use crate::utils::model_ledger::ModelLedger;
use crate::utils::request::{GuidanceRequest, PromptEnhancement};
use crate::utils::stages::{run_stage, Sampler, Stage};
use crate::utils::types::{PipelineNoise, ProgressEvent, RunIo};
use crate::{Error, Result};

/// What a retake regenerates.
#[derive(Clone, Debug)]
pub struct RetakeRequest {
    /// The source video (H.264 MP4; its audio track, if any, is retaken too).
    pub video_path: PathBuf,
    pub prompt: String,
    pub start_time: f64,
    pub end_time: f64,
    pub seed: u64,
    /// The generator `seed` seeds.
    pub noise: NoiseKind,
    /// `false`: the whole video is regenerated (the source still starts the denoising).
    pub regenerate_video: bool,
    /// `false`: the soundtrack is kept as it is.
    pub regenerate_audio: bool,
    /// `None`: decode in one piece.
    pub tiling: Option<TilingConfig>,
    /// `Some`: Gemma rewrites the prompt first.
    pub enhance_prompt: Option<PromptEnhancement>,
}

/// Dev (guided, LTX-2 schedule) or distilled (8 fixed sigmas, no guidance).
#[derive(Clone, Debug)]
pub enum RetakeMode {
    Dev(GuidanceRequest),
    Distilled,
}

/// The source video's facts the output takes over.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetakeSource {
    pub fps: f64,
    pub frames: usize,
    pub width: usize,
    pub height: usize,
    pub has_audio: bool,
}

impl RetakeRequest {
    /// Reads the source's size, frame count and rate and checks them and the window (cheap; no
    /// frame is decoded): frames 8k+1, width and height multiples of 32, `start < end`.
    pub fn probe(&self) -> Result<RetakeSource> {
        let ok = |t: f64| t.is_finite() && t >= 0.0;
        if !ok(self.start_time) || !ok(self.end_time) || self.start_time >= self.end_time {
            return Err(Error::InvalidArgument(format!(
                "the retake window [{}, {}) s must have 0 <= start < end",
                self.start_time, self.end_time
            )));
        }
        if self.prompt.trim().is_empty() {
            return Err(Error::InvalidArgument("the prompt is empty".into()));
        }
        let info = probe_mp4(&self.video_path)?;
        let src = RetakeSource {
            fps: info.fps,
            frames: info.frame_count,
            width: info.width as usize,
            height: info.height as usize,
            has_audio: info.audio.is_some(),
        };
        let path = self.video_path.display();
        if src.frames == 0 || (src.frames - 1) % 8 != 0 {
            let snapped = src.frames.saturating_sub(1) / 8 * 8 + 1;
            return Err(Error::InvalidArgument(format!(
                "`{path}` has {} frames; a retake needs 8k+1 frames (e.g. 97, 121): cut it to {snapped}",
                src.frames
            )));
        }
        if src.width % 32 != 0 || src.height % 32 != 0 {
            return Err(Error::InvalidArgument(format!(
                "`{path}` is {}x{}; a retake needs a width and height that are multiples of 32",
                src.width, src.height
            )));
        }
        if !(src.fps.is_finite() && src.fps > 0.0) {
            return Err(Error::InvalidArgument(format!(
                "`{path}` has no usable frame rate"
            )));
        }
        let duration = src.frames as f64 / src.fps;
        if self.start_time >= duration {
            return Err(Error::InvalidArgument(format!(
                "the retake starts at {} s, after the video's end ({duration:.3} s)",
                self.start_time
            )));
        }
        Ok(src)
    }
}

/// Audio latent trimmed or zero-padded along time to `frames` (`_encode_audio_for_retake`).
pub fn fit_audio_latent(latent: &Tensor, frames: usize) -> Result<Tensor> {
    let have = latent.dim(2)?;
    Ok(if have >= frames {
        latent.narrow(2, 0, frames)?
    } else {
        let (b, c, _, m) = latent.dims4()?;
        let pad = Tensor::zeros((b, c, frames - have, m), latent.dtype(), latent.device())?;
        Tensor::cat(&[latent, &pad], 2)?
    })
}

/// What a retake returns: the audio, and the source facts the output keeps.
pub type Retaken = (Audio, RetakeSource);

/// The retake pipeline.
pub struct RetakePipeline {
    pub ledger: ModelLedger,
}

impl RetakePipeline {
    pub fn new(ledger: ModelLedger) -> Self {
        Self { ledger }
    }

    /// Runs the retake; decoded video chunks (`[f, H, W, 3]` f32 in [0, 1], the source's size) go to `sink`,
    /// the audio is returned with the source's facts.
    pub fn run(&self, req: &RetakeRequest, mode: &RetakeMode, io: RunIo) -> Result<Retaken> {
        let RunIo { progress, sink } = io;
        if let Some(tiling) = &req.tiling {
            tiling.validate()?;
        }
        let src = req.probe()?;
        if let RetakeMode::Dev(g) = mode {
            g.validate()?;
        }
        let ledger = &self.ledger;
        let (dtype, device) = (ledger.dtype, ledger.device.clone());
        let mut noise = PipelineNoise::new(req.noise, req.seed);
        let shape = VideoPixelShape {
            batch: 1,
            frames: src.frames,
            height: src.height,
            width: src.width,
            fps: src.fps,
        };

        progress(ProgressEvent::Stage {
            name: "encode source",
            total: 0,
        });
        let video_latent = ConditioningEncoder::new(ledger)?.encode(&load_video_conditioning(
            &req.video_path,
            src.height,
            src.width,
            src.frames,
        )?)?;
        let window = |regenerate: bool| TemporalRegionMask {
            start_time: if regenerate { req.start_time } else { 0.0 },
            end_time: if regenerate { req.end_time } else { 0.0 },
            fps: src.fps,
        };
        let video_mask = window(req.regenerate_video);
        let audio_latent = match decode_audio_file(&req.video_path, 0.0, None)? {
            None => None,
            Some(decoded) => {
                let audio = decoded.into_stereo().to_audio(&device)?;
                // the reference casts the waveform to the model dtype before the mel transform
                let audio = Audio {
                    waveform: audio.waveform.to_dtype(dtype)?.to_dtype(DType::F32)?,
                    sampling_rate: audio.sampling_rate,
                };
                let latent = encode_audio_waveform(ledger, &audio)?;
                let frames =
                    AudioLatentShape::from_video_pixel_shape(&shape, AudioLatentParams::default())?
                        .frames;
                Some(fit_audio_latent(&latent, frames)?)
            }
        };
        let audio_mask = audio_latent.as_ref().map(|_| window(req.regenerate_audio));

        let distilled = matches!(mode, RetakeMode::Distilled);
        let prompts: Vec<&str> = match mode {
            RetakeMode::Distilled => vec![req.prompt.as_str()],
            RetakeMode::Dev(g) => vec![req.prompt.as_str(), g.negative_prompt.as_str()],
        };
        let mut contexts = encode_prompts(
            ledger,
            &prompts,
            req.enhance_prompt.as_ref(),
            req.seed,
            progress,
        )?;
        let negative = if distilled { None } else { contexts.pop() };
        let positive = contexts.pop().expect("the positive prompt");

        let transformer = ledger.transformer()?;
        let (sigmas, mut denoiser): (Vec<f32>, Box<dyn DenoisingFunc + '_>) = match (mode, negative)
        {
            (RetakeMode::Dev(g), Some(negative)) => (
                Ltx2Scheduler::default().sigmas(g.num_inference_steps, None)?,
                Box::new(MultiModalDenoiser::from_guidance(
                    &transformer,
                    g,
                    positive,
                    negative,
                )?),
            ),
            _ => (
                DISTILLED_SIGMA_VALUES.to_vec(),
                Box::new(SimpleDenoiser::new(&transformer, positive)),
            ),
        };
        let audio_conditioning = |s: LatentState, tools: &AudioLatentTools| match &audio_mask {
            Some(m) => Ok(m.apply_to_audio(&s, tools)?),
            None => Ok(s),
        };
        let video_conditionings: Vec<Box<dyn ConditioningItem>> = vec![Box::new(video_mask)];
        let stage = Stage {
            name: "denoise",
            sampler: Sampler::Euler,
            sigmas: &sigmas,
            inputs: StageInputs {
                shape: &shape,
                conditionings: &video_conditionings,
                noise_scale: 1.0,
                initial_video: Some(&video_latent),
                audio: StageAudio::Generate {
                    initial: audio_latent.as_ref(),
                    conditioning: Some(&audio_conditioning),
                },
                dtype,
                device: &device,
            },
        };
        let (video, audio) = run_stage(&stage, denoiser.as_mut(), &mut noise, progress)?;
        drop(denoiser);
        drop(transformer);
        let latents = (&video.latent, &audio.latent);
        let audio = decode_outputs(ledger, latents, req.tiling.as_ref(), progress, sink)?;
        Ok((audio, src))
    }
}

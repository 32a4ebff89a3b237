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

use candle_core::{DType, Device, Tensor};
use ltx_core::components::guiders::MultiModalGuiderFactory;
use ltx_core::components::noisers::NoiseGenerator;
use ltx_core::components::patchifiers::get_pixel_coords;
use ltx_core::components::schedulers::Ltx2Scheduler;
use ltx_core::conditioning::ConditioningItem;
use ltx_core::model::video_vae::TilingConfig;
use ltx_core::tools::{AudioLatentTools, VideoLatentTools};
use ltx_core::types::{Audio, AudioLatentParams, AudioLatentShape, LatentState, VideoPixelShape};

use crate::media::{decode_audio_file, load_video_conditioning, probe_mp4};
use crate::ti2vid_one_stage::GuidanceRequest;
use crate::utils::constants::DISTILLED_SIGMA_VALUES;
use crate::utils::helpers::{
    denoise_conditioned_audio_video, DenoisingFunc, MultiModalDenoiser, SimpleDenoiser,
};
use crate::utils::model_ledger::ModelLedger;
use crate::utils::stages::{
    decode_audio_latent, decode_video_chunks, encode_audio_waveform, encode_prompts, euler_stage,
    ProgressEvent, PromptEnhancement,
};
use crate::{Error, Result};

/// Marks the tokens whose time span overlaps `[start_time, end_time)` (seconds) for denoising
/// (mask 1) and every other token as kept (mask 0). Video tokens are timed by their pixel-frame
/// bounds over `fps` (the causal VAE's first latent frame covers pixel frame 0 only); audio tokens
/// by the audio patchifier's own timestamps. The comparisons are made in f32, as the reference's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TemporalRegionMask {
    pub start_time: f64,
    pub end_time: f64,
    pub fps: f64,
}

impl TemporalRegionMask {
    fn overlaps(&self, start: f32, end: f32) -> bool {
        end > self.start_time as f32 && start < self.end_time as f32
    }

    /// `[N]` f32 flags (1 inside the window) of the video grid's tokens.
    pub fn video_region(&self, tools: &VideoLatentTools, device: &Device) -> Result<Tensor> {
        let bounds = tools
            .patchifier
            .get_patch_grid_bounds(&tools.target_shape, &Device::Cpu)?;
        let pixel = get_pixel_coords(&bounds, tools.scale_factors, tools.causal_fix)?;
        // batch 0, frame axis: [N, 2] pixel-frame bounds
        let frames = pixel.get(0)?.get(0)?.to_dtype(DType::I64)?;
        let frames: Vec<Vec<i64>> = frames.to_vec2()?;
        let fps = self.fps as f32;
        let flags: Vec<f32> = frames
            .iter()
            .map(|b| {
                let inside = self.overlaps(b[0] as f32 / fps, b[1] as f32 / fps);
                f32::from(u8::from(inside))
            })
            .collect();
        let n = flags.len();
        Ok(Tensor::from_vec(flags, n, device)?)
    }

    /// `[B, N]` f32 flags (1 inside the window) of the audio grid's tokens.
    pub fn audio_region(&self, tools: &AudioLatentTools, device: &Device) -> Result<Tensor> {
        let bounds = tools
            .patchifier
            .get_patch_grid_bounds(&tools.target_shape, &Device::Cpu)?;
        let (b, _, n, _) = bounds.dims4()?;
        let times: Vec<f32> = bounds.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let flags: Vec<f32> = times
            .chunks_exact(2)
            .map(|t| f32::from(u8::from(self.overlaps(t[0], t[1]))))
            .collect();
        Ok(Tensor::from_vec(flags, (b, n), device)?)
    }

    /// The state with its first `N` tokens' denoise mask replaced by `flags` (`[N]` or `[B, N]`).
    fn write(state: &LatentState, flags: &Tensor) -> Result<LatentState> {
        let mask = &state.denoise_mask;
        let dims = mask.dims().to_vec();
        if dims.len() < 2 {
            return Err(Error::InvalidArgument(format!(
                "denoise mask of shape {dims:?} has no token axis"
            )));
        }
        let n = *flags.dims().last().unwrap_or(&0);
        if n > dims[1] {
            return Err(Error::InvalidArgument(format!(
                "the time-region mask covers {n} tokens, the latent state has {}",
                dims[1]
            )));
        }
        let mut target = dims.clone();
        target[1] = n;
        let flags = match flags.rank() {
            1 => flags.reshape((1, n))?,
            _ => flags.clone(),
        };
        let mut shape = vec![flags.dim(0)?, n];
        shape.extend(std::iter::repeat_n(1, dims.len() - 2));
        let values = flags
            .reshape(shape)?
            .broadcast_as(target.as_slice())?
            .to_dtype(mask.dtype())?
            .contiguous()?;
        let ranges: Vec<std::ops::Range<usize>> = target.iter().map(|&d| 0..d).collect();
        let mut out = state.clone();
        out.denoise_mask = mask.slice_assign(&ranges, &values)?;
        Ok(out)
    }

    /// Applies the mask to a patchified audio state.
    pub fn apply_to_audio(
        &self,
        state: &LatentState,
        tools: &AudioLatentTools,
    ) -> Result<LatentState> {
        let flags = self.audio_region(tools, state.denoise_mask.device())?;
        Self::write(state, &flags)
    }
}

impl ConditioningItem for TemporalRegionMask {
    fn apply_to(
        &self,
        latent_state: &LatentState,
        tools: &VideoLatentTools,
    ) -> ltx_core::Result<LatentState> {
        let run = || -> Result<LatentState> {
            let flags = self.video_region(tools, latent_state.denoise_mask.device())?;
            Self::write(latent_state, &flags)
        };
        run().map_err(|e| match e {
            Error::Core(c) => c,
            other => ltx_core::Error::Conditioning(other.to_string()),
        })
    }
}

/// What a retake regenerates.
#[derive(Clone, Debug)]
pub struct RetakeRequest {
    /// The source video (H.264 MP4; its audio track, if any, is retaken too).
    pub video_path: PathBuf,
    pub prompt: String,
    pub start_time: f64,
    pub end_time: f64,
    pub seed: u64,
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

/// The retake pipeline.
pub struct RetakePipeline {
    pub ledger: ModelLedger,
}

impl RetakePipeline {
    pub fn new(ledger: ModelLedger) -> Self {
        Self { ledger }
    }

    /// Runs the retake; decoded video chunks (`[f, H, W, 3]` u8, the source's size) go to `sink`,
    /// the audio is returned with the source's facts.
    pub fn run(
        &self,
        req: &RetakeRequest,
        mode: &RetakeMode,
        progress: &mut dyn FnMut(ProgressEvent),
        sink: &mut dyn FnMut(Tensor) -> Result<()>,
    ) -> Result<(Audio, RetakeSource)> {
        let src = req.probe()?;
        if let RetakeMode::Dev(g) = mode {
            g.validate()?;
        }
        let ledger = &self.ledger;
        let (dtype, device) = (ledger.dtype, ledger.device.clone());
        let mut noise = NoiseGenerator::new(req.seed);
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
        let video_latent = {
            let encoder = ledger.video_encoder()?;
            let pixels =
                load_video_conditioning(&req.video_path, src.height, src.width, src.frames)?
                    .to_dtype(dtype)?
                    .to_device(&device)?;
            encoder.forward(&pixels)?
        };
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
        let (v_pos, a_pos) = contexts.pop().expect("the positive prompt");

        let (video, audio) = {
            let transformer = ledger.transformer()?;
            let sigmas: Vec<f32> = match mode {
                RetakeMode::Distilled => DISTILLED_SIGMA_VALUES.to_vec(),
                RetakeMode::Dev(g) => {
                    Ltx2Scheduler::default().sigmas(g.num_inference_steps, None)?
                }
            };
            let sigmas = Tensor::new(sigmas.as_slice(), &device)?;
            let mut denoiser: Box<dyn DenoisingFunc + '_> = match (mode, negative) {
                (RetakeMode::Dev(g), Some((v_neg, a_neg))) => Box::new(MultiModalDenoiser::new(
                    &transformer,
                    MultiModalGuiderFactory::constant(g.video_guider.clone(), Some(v_neg))?,
                    Some(MultiModalGuiderFactory::constant(
                        g.audio_guider.clone(),
                        Some(a_neg),
                    )?),
                    v_pos,
                    a_pos,
                )),
                _ => Box::new(SimpleDenoiser {
                    transformer: &transformer,
                    video_context: v_pos,
                    audio_context: a_pos,
                }),
            };
            let steps = sigmas.dim(0)? - 1;
            progress(ProgressEvent::Stage {
                name: "denoise",
                total: steps,
            });
            let audio_conditioning = |s: LatentState, tools: &AudioLatentTools| match &audio_mask {
                Some(m) => m.apply_to_audio(&s, tools),
                None => Ok(s),
            };
            let video_conditionings: Vec<Box<dyn ConditioningItem>> = vec![Box::new(video_mask)];
            // video first, then audio: the reference draws the two noises in this order
            let (video, audio) = denoise_conditioned_audio_video(
                &shape,
                (&video_conditionings, Some(&audio_conditioning)),
                &mut noise,
                &mut euler_stage(&sigmas, denoiser.as_mut(), progress),
                dtype,
                &device,
                1.0,
                Some(&video_latent),
                audio_latent.as_ref(),
            )?;
            (video.latent, audio.latent)
        };
        decode_video_chunks(ledger, &video, req.tiling.as_ref(), progress, sink)?;
        let audio = decode_audio_latent(ledger, &audio, progress)?;
        Ok((audio, src))
    }
}

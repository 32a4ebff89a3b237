//! Port of `ltx_pipelines/ti2vid_one_stage.py`: text/image-to-video in one stage at full
//! resolution with the full (non-distilled) model, the LTX-2 scheduler and multimodal guidance
//! (CFG against the negative prompt, STG, modality guidance, rescale).

use candle_core::Tensor;
use ltx_core::components::guiders::{MultiModalGuiderFactory, MultiModalGuiderParams};
use ltx_core::components::noisers::NoiseGenerator;
use ltx_core::components::schedulers::Ltx2Scheduler;
use ltx_core::types::{Audio, VideoPixelShape};

use crate::utils::helpers::{denoise_audio_video, MultiModalDenoiser};
use crate::utils::model_ledger::ModelLedger;
use crate::utils::stages::{
    decode_audio_latent, decode_video_chunks, encode_prompts, euler_stage, image_conditionings,
    GenerationRequest, ProgressEvent,
};
use crate::{Error, Result};

/// What the guided pipelines take on top of a [`GenerationRequest`].
#[derive(Clone, Debug)]
pub struct GuidanceRequest {
    pub negative_prompt: String,
    pub num_inference_steps: usize,
    pub video_guider: MultiModalGuiderParams,
    pub audio_guider: MultiModalGuiderParams,
}

impl GuidanceRequest {
    pub fn validate(&self) -> Result<()> {
        if self.num_inference_steps == 0 {
            return Err(Error::InvalidArgument(
                "--num-inference-steps must be at least 1".into(),
            ));
        }
        self.video_guider.validate()?;
        self.audio_guider.validate()?;
        Ok(())
    }
}

/// Stage 1 of the guided pipelines: prompt + negative prompt encoded, image conditionings,
/// `steps` Euler steps of the LTX-2 schedule with the multimodal guider, at `shape`. Returns the
/// video and audio latents in grid layout.
pub(crate) fn guided_stage(
    ledger: &ModelLedger,
    req: &GenerationRequest,
    guidance: &GuidanceRequest,
    shape: &VideoPixelShape,
    noise: &mut NoiseGenerator,
    progress: &mut dyn FnMut(ProgressEvent),
) -> Result<(Tensor, Tensor, (Tensor, Tensor))> {
    let (dtype, device) = (ledger.dtype, ledger.device.clone());
    let mut contexts = encode_prompts(
        ledger,
        &[req.prompt.as_str(), guidance.negative_prompt.as_str()],
        progress,
    )?;
    let (v_neg, a_neg) = contexts.pop().expect("two prompts");
    let (v_pos, a_pos) = contexts.pop().expect("two prompts");
    let conds = {
        let encoder = ledger.video_encoder()?;
        image_conditionings(
            &req.images,
            shape.height,
            shape.width,
            &encoder,
            dtype,
            &device,
        )?
    };
    let transformer = ledger.transformer()?;
    let sigmas = Ltx2Scheduler::default().sigmas(guidance.num_inference_steps, None)?;
    let sigmas = Tensor::new(sigmas.as_slice(), &device)?;
    let mut denoiser = MultiModalDenoiser::new(
        &transformer,
        MultiModalGuiderFactory::constant(guidance.video_guider.clone(), Some(v_neg))?,
        Some(MultiModalGuiderFactory::constant(
            guidance.audio_guider.clone(),
            Some(a_neg),
        )?),
        v_pos.clone(),
        a_pos.clone(),
    );
    progress(ProgressEvent::Stage {
        name: "denoise",
        total: guidance.num_inference_steps,
    });
    let (video, audio) = denoise_audio_video(
        shape,
        &conds,
        noise,
        &mut euler_stage(&sigmas, &mut denoiser, progress),
        dtype,
        &device,
        1.0,
        None,
        None,
    )?;
    Ok((video.latent, audio.latent, (v_pos, a_pos)))
}

/// The one-stage pipeline.
pub struct TI2VidOneStagePipeline {
    pub ledger: ModelLedger,
}

impl TI2VidOneStagePipeline {
    pub fn new(ledger: ModelLedger) -> Self {
        Self { ledger }
    }

    pub fn run(
        &self,
        req: &GenerationRequest,
        guidance: &GuidanceRequest,
        progress: &mut dyn FnMut(ProgressEvent),
        sink: &mut dyn FnMut(Tensor) -> Result<()>,
    ) -> Result<Audio> {
        req.validate(false)?;
        guidance.validate()?;
        let shape = VideoPixelShape {
            batch: 1,
            frames: req.num_frames,
            height: req.height,
            width: req.width,
            fps: req.frame_rate,
        };
        let mut noise = NoiseGenerator::new(req.seed);
        let (video, audio, _) =
            guided_stage(&self.ledger, req, guidance, &shape, &mut noise, progress)?;
        decode_video_chunks(&self.ledger, &video, req.tiling.as_ref(), progress, sink)?;
        decode_audio_latent(&self.ledger, &audio, progress)
    }
}

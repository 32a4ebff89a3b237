//! Port of `ltx_pipelines/a2vid_two_stage.py`: audio-to-video. The soundtrack is read from a file,
//! encoded by the audio VAE and kept clean in both stages (zero denoise mask) while the video is
//! generated around it: stage 1 at half size with video guidance only, x2 upsampler, stage 2 with
//! the distilled LoRA. Like the reference, the output audio is the input waveform itself (at the
//! file's rate), not a re-synthesis.

use std::path::PathBuf;

use candle_core::Tensor;
use ltx_core::components::guiders::{MultiModalGuiderFactory, MultiModalGuiderParams};
use ltx_core::components::noisers::NoiseGenerator;
use ltx_core::components::schedulers::Ltx2Scheduler;
use ltx_core::types::{Audio, AudioLatentParams, AudioLatentShape};

use crate::media::audio::load_audio;
use crate::ti2vid_one_stage::GuidanceRequest;
use crate::utils::constants::STAGE_2_DISTILLED_SIGMA_VALUES;
use crate::utils::helpers::{denoise_video_only, MultiModalDenoiser, SimpleDenoiser};
use crate::utils::model_ledger::{LoraSpec, ModelLedger};
use crate::utils::stages::{
    decode_video_chunks, encode_audio_waveform, encode_prompts, euler_stage, image_conditionings,
    upsample_for_stage_2, GenerationRequest, ImageConditioningMode, ProgressEvent,
};
use crate::{Error, Result};

/// The soundtrack to generate a video for.
#[derive(Clone, Debug)]
pub struct AudioInput {
    pub path: PathBuf,
    pub start_time: f64,
    pub max_duration: Option<f64>,
}

pub struct A2VidTwoStagePipeline {
    pub stage_1: ModelLedger,
    pub stage_2: ModelLedger,
}

impl A2VidTwoStagePipeline {
    pub fn new(ledger: ModelLedger, distilled_lora: &[LoraSpec]) -> Result<Self> {
        let stage_2 = ledger.with_additional_loras(distilled_lora)?;
        Ok(Self {
            stage_1: ledger,
            stage_2,
        })
    }

    /// Returns the input audio (stereo, at its own rate).
    pub fn run(
        &self,
        req: &GenerationRequest,
        guidance: &GuidanceRequest,
        input: &AudioInput,
        progress: &mut dyn FnMut(ProgressEvent),
        sink: &mut dyn FnMut(Tensor) -> Result<()>,
    ) -> Result<Audio> {
        req.validate(true)?;
        guidance.validate()?;
        let decoded = load_audio(&input.path, input.start_time, input.max_duration)?.into_stereo();
        let (dtype, device) = (self.stage_1.dtype, self.stage_1.device.clone());
        let mut noise = NoiseGenerator::new(req.seed);
        let mut contexts = encode_prompts(
            &self.stage_1,
            &[req.prompt.as_str(), guidance.negative_prompt.as_str()],
            req.enhancement().as_ref(),
            req.seed,
            progress,
        )?;
        let (v_neg, _) = contexts.pop().expect("two prompts");
        let (v_pos, a_pos) = contexts.pop().expect("two prompts");

        progress(ProgressEvent::Stage {
            name: "audio encode",
            total: 0,
        });
        let audio = decoded.to_audio(&device)?;
        let latent = encode_audio_waveform(&self.stage_1, &audio)?;
        let shape = AudioLatentShape::from_duration(
            1,
            req.num_frames as f64 / req.frame_rate,
            AudioLatentParams::default(),
        )?;
        let have = latent.dim(2)?;
        if have < shape.frames {
            return Err(Error::InvalidArgument(format!(
                "the audio `{}` lasts {:.2} s, the video {:.2} s: give a longer soundtrack or fewer \
                 frames",
                input.path.display(),
                decoded.duration(),
                req.num_frames as f64 / req.frame_rate
            )));
        }
        let latent = latent.narrow(2, 0, shape.frames)?;

        let shape1 = req.pixel_shape(2);
        let conds1 = {
            let encoder = self.stage_1.video_encoder()?;
            image_conditionings(
                &req.images,
                shape1.height,
                shape1.width,
                &encoder,
                dtype,
                &device,
            )?
        };
        // the stage loops borrow their denoiser until the end of the block that builds them
        #[allow(clippy::let_and_return)]
        let video1 = {
            let transformer = self.stage_1.transformer()?;
            let sigmas = Ltx2Scheduler::default().sigmas(guidance.num_inference_steps, None)?;
            let sigmas = Tensor::new(sigmas.as_slice(), &device)?;
            let mut denoiser = MultiModalDenoiser::new(
                &transformer,
                MultiModalGuiderFactory::constant(guidance.video_guider.clone(), Some(v_neg))?,
                // the audio is given: no guidance on it
                Some(MultiModalGuiderFactory::constant(
                    MultiModalGuiderParams::default(),
                    None,
                )?),
                v_pos.clone(),
                a_pos.clone(),
            );
            progress(ProgressEvent::Stage {
                name: "denoise (stage 1)",
                total: guidance.num_inference_steps,
            });
            let mut lp = euler_stage(&sigmas, &mut denoiser, progress);
            let v = denoise_video_only(
                &shape1,
                &conds1,
                &mut noise,
                &mut lp,
                dtype,
                &device,
                1.0,
                None,
                Some(&latent),
            )?;
            v
        };

        let shape2 = req.pixel_shape(1);
        let (upscaled, conds2) = upsample_for_stage_2(
            &self.stage_1,
            &self.stage_2,
            &video1.latent,
            ImageConditioningMode::Combined,
            &req.images,
            shape2.height,
            shape2.width,
            progress,
        )?;
        #[allow(clippy::let_and_return)]
        let video2 = {
            let transformer = self.stage_2.transformer()?;
            let sigmas = Tensor::new(&STAGE_2_DISTILLED_SIGMA_VALUES, &device)?;
            let mut denoiser = SimpleDenoiser {
                transformer: &transformer,
                video_context: v_pos,
                audio_context: a_pos,
            };
            progress(ProgressEvent::Stage {
                name: "denoise (stage 2)",
                total: sigmas.dim(0)? - 1,
            });
            let mut lp = euler_stage(&sigmas, &mut denoiser, progress);
            let v = denoise_video_only(
                &shape2,
                &conds2,
                &mut noise,
                &mut lp,
                dtype,
                &device,
                STAGE_2_DISTILLED_SIGMA_VALUES[0] as f64,
                Some(&upscaled),
                Some(&latent),
            )?;
            v
        };
        decode_video_chunks(
            &self.stage_2,
            &video2.latent,
            req.tiling.as_ref(),
            progress,
            sink,
        )?;
        decoded.to_audio(&candle_core::Device::Cpu)
    }
}

//! Port of `ltx_pipelines/a2vid_two_stage.py`: audio-to-video. The soundtrack is read from a file,
//! encoded by the audio VAE and kept clean in both stages (zero denoise mask) while the video is
//! generated around it: stage 1 at half size with video guidance only, x2 upsampler, stage 2 with
//! the distilled LoRA. Like the reference, the output audio is the input waveform itself (at the
//! file's rate), not a re-synthesis.

use std::path::PathBuf;

use ltx_core::types::{Audio, AudioLatentParams, AudioLatentShape};

use crate::media::audio::load_audio;
use crate::utils::blocks::{decode_video_chunks, encode_audio_waveform};
use crate::utils::helpers::ImageConditioningMode;
use crate::utils::model_ledger::{LoraSpec, ModelLedger};
use crate::utils::request::GuidedRequest;
use crate::utils::stages::{
    guided_stage, GuidedAudio, Sampler, StageTwo, TwoStageFlow, TwoStageLedgers,
};
use crate::utils::types::{PipelineNoise, ProgressEvent, RunIo};
use crate::{Error, Result};

/// The soundtrack to generate a video for.
#[derive(Clone, Debug)]
pub struct AudioInput {
    pub path: PathBuf,
    pub start_time: f64,
    pub max_duration: Option<f64>,
}

pub struct A2VidTwoStagePipeline {
    pub ledgers: TwoStageLedgers,
}

impl A2VidTwoStagePipeline {
    /// `distilled_lora`: the LoRA that turns the full model into the distilled one for stage 2.
    pub fn new(ledger: ModelLedger, distilled_lora: &[LoraSpec]) -> Result<Self> {
        TwoStageLedgers::with_distilled_lora(ledger, distilled_lora).map(|ledgers| Self { ledgers })
    }

    /// Returns the input audio (stereo, at its own rate).
    pub fn run(&self, request: GuidedRequest, input: &AudioInput, io: RunIo) -> Result<Audio> {
        let RunIo { progress, sink } = io;
        let (req, guidance) = request;
        req.validate(true)?;
        guidance.validate()?;
        let stage_1 = &self.ledgers.stage_1;
        let decoded = load_audio(&input.path, input.start_time, input.max_duration)?.into_stereo();
        let mut noise = PipelineNoise::new(req.noise, req.seed);

        progress(ProgressEvent::Stage {
            name: "audio encode",
            total: 0,
        });
        let latent = encode_audio_waveform(stage_1, &decoded.to_audio(&stage_1.device)?)?;
        let seconds = req.num_frames as f64 / req.frame_rate;
        let shape = AudioLatentShape::from_duration(1, seconds, AudioLatentParams::default())?;
        if latent.dim(2)? < shape.frames {
            return Err(Error::InvalidArgument(format!(
                "the audio `{}` lasts {:.2} s, the video {seconds:.2} s: give a longer soundtrack \
                 or fewer frames",
                input.path.display(),
                decoded.duration(),
            )));
        }
        let latent = latent.narrow(2, 0, shape.frames)?;

        let (stage_1, _) = guided_stage(
            stage_1,
            request,
            (2, "denoise (stage 1)"),
            (Sampler::Euler, false),
            (ImageConditioningMode::Combined, GuidedAudio::Keep(&latent)),
            &mut noise,
            progress,
        )?;
        let stage_2 = StageTwo {
            ledgers: (&self.ledgers.stage_1, &self.ledgers.stage_2),
            flow: TwoStageFlow::new(Sampler::Euler, ImageConditioningMode::Combined),
            req,
        };
        let (video2, _) = stage_2.refine(&stage_1, (true, None), &mut noise, progress)?;
        drop(stage_1);
        let ledger = &self.ledgers.stage_2;
        decode_video_chunks(ledger, &video2.latent, req.tiling.as_ref(), progress, sink)?;
        decoded.to_audio(&candle_core::Device::Cpu)
    }
}

//! Port of `ltx_pipelines/distilled.py`: the two-stage distilled pipeline (`ltx generate`'s
//! default). Stage 1 denoises at half resolution with the 8-step distilled schedule, the spatial
//! upsampler doubles the latent, stage 2 refines it with 3 more steps at full resolution, then the
//! video VAE decodes (streamed in chunks) and the audio VAE + vocoder make the soundtrack.
//!
//! Each component is built from the ledger when its stage starts and dropped when it ends.

use candle_core::Tensor;
use ltx_core::components::noisers::NoiseGenerator;
use ltx_core::model::upsampler::upsample_video;
use ltx_core::types::Audio;

use crate::ti2vid_one_stage::Sampler;
use crate::ti2vid_two_stages::refine_stage_2;
use crate::utils::constants::DISTILLED_SIGMA_VALUES;
use crate::utils::helpers::{denoise_audio_video, SimpleDenoiser};
use crate::utils::model_ledger::ModelLedger;
pub use crate::utils::stages::{
    decode_audio_latent, decode_video_chunks, encode_prompt, euler_stage, image_conditionings,
    GenerationRequest, ImageConditioningInput, ProgressEvent,
};
use crate::Result;

/// The two-stage distilled pipeline.
pub struct DistilledPipeline {
    pub ledger: ModelLedger,
}

impl DistilledPipeline {
    pub fn new(ledger: ModelLedger) -> Self {
        Self { ledger }
    }

    /// Runs the pipeline; decoded video chunks (`[f, H, W, 3]` u8) go to `sink` as they are
    /// produced, the audio is returned.
    pub fn run(
        &self,
        req: &GenerationRequest,
        progress: &mut dyn FnMut(ProgressEvent),
        sink: &mut dyn FnMut(Tensor) -> Result<()>,
    ) -> Result<Audio> {
        req.validate(true)?;
        let ledger = &self.ledger;
        let (dtype, device) = (ledger.dtype, ledger.device.clone());
        let mut noise = NoiseGenerator::new(req.seed);

        let (video_ctx, audio_ctx) = encode_prompt(ledger, req, progress)?;
        let video_ctx = video_ctx.to_dtype(dtype)?;
        let audio_ctx = audio_ctx.to_dtype(dtype)?;

        let encoder = ledger.video_encoder()?;
        let transformer = ledger.transformer()?;
        let mut denoiser = SimpleDenoiser {
            transformer: &transformer,
            video_context: video_ctx,
            audio_context: audio_ctx,
        };

        // stage 1: half resolution
        let shape1 = req.pixel_shape(2);
        let conds1 = image_conditionings(
            &req.images,
            shape1.height,
            shape1.width,
            &encoder,
            dtype,
            &device,
        )?;
        let sigmas1 = Tensor::new(&DISTILLED_SIGMA_VALUES, &device)?;
        let total1 = sigmas1.dim(0)? - 1;
        progress(ProgressEvent::Stage {
            name: "denoise (stage 1)",
            total: total1,
        });
        let (video1, audio1) = denoise_audio_video(
            &shape1,
            &conds1,
            &mut noise,
            &mut euler_stage(&sigmas1, &mut denoiser, progress),
            dtype,
            &device,
            1.0,
            None,
            None,
        )?;

        // upsample x2 in latent space
        progress(ProgressEvent::Stage {
            name: "upsample",
            total: 0,
        });
        let upscaled = {
            let upsampler = ledger.spatial_upsampler()?;
            upsample_video(
                &video1.latent.narrow(0, 0, 1)?,
                encoder.per_channel_statistics(),
                &upsampler,
            )?
        };

        // stage 2: full resolution, from the upscaled latent re-noised to the schedule's start
        let shape2 = req.pixel_shape(1);
        let conds2 = image_conditionings(
            &req.images,
            shape2.height,
            shape2.width,
            &encoder,
            dtype,
            &device,
        )?;
        let (video2, audio2) = refine_stage_2(
            Sampler::Euler,
            ledger,
            &shape2,
            &conds2,
            &mut noise,
            &mut denoiser,
            (&upscaled, &audio1.latent),
            progress,
        )?;
        drop(denoiser);
        drop((transformer, encoder, conds1, conds2));

        decode_video_chunks(ledger, &video2.latent, req.tiling.as_ref(), progress, sink)?;
        decode_audio_latent(ledger, &audio2.latent, progress)
    }
}

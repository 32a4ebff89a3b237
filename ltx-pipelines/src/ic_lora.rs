//! Port of `ltx_pipelines/ic_lora.py`: in-context LoRA generation. A control video (depth, pose,
//! edges, ...) is encoded and appended to the stage-1 token sequence as reference tokens
//! (`VideoConditionByReferenceLatent`), optionally with an attention strength (a scalar or a
//! per-token mask made from a grayscale mask video) that scales how much the generated tokens
//! attend to them. Stage 1 runs the distilled schedule at half size with the IC-LoRA fused; stage
//! 2 upsamples x2 and refines with the plain distilled model (no IC-LoRA, no reference tokens), or
//! is skipped (`skip_stage_2`: the output is the half-size stage-1 video).
//!
//! IC-LoRAs trained on low-resolution references store `reference_downscale_factor` in their
//! safetensors metadata; the reference video is then encoded at `1 / factor` of the stage-1 size
//! and its positions scaled up to match.

use std::path::PathBuf;

use candle_core::DType;
use ltx_core::conditioning::{
    AttentionStrength, ConditioningItem, ConditioningItemAttentionStrengthWrapper,
    VideoConditionByReferenceLatent,
};
use ltx_core::types::Audio;

pub use crate::iclora_utils::{
    downsample_mask_to_latent, mask_from_pixels, read_reference_downscale_factor,
    reference_downscale_factor,
};
use crate::media::load_video_conditioning;
use crate::utils::blocks::{decode_outputs, encode_prompt, ConditioningEncoder};
use crate::utils::helpers::ImageConditioningMode;
use crate::utils::model_ledger::ModelLedger;
use crate::utils::request::GenerationRequest;
use crate::utils::stages::{distilled_stage_1, Sampler, StageTwo, TwoStageFlow};
use crate::utils::types::{PipelineNoise, ProgressEvent, RunIo};
use crate::{Error, Result};

/// A control video and its conditioning strength (`--video-conditioning PATH STRENGTH`).
#[derive(Clone, Debug, PartialEq)]
pub struct VideoConditioningInput {
    pub path: PathBuf,
    pub strength: f64,
}

/// What IC-LoRA generation takes on top of a [`GenerationRequest`].
#[derive(Clone, Debug)]
pub struct IcLoraRequest {
    pub video_conditioning: Vec<VideoConditioningInput>,
    /// A grayscale mask video (white = full attention to the reference), read at the stage-1
    /// size; multiplied by `conditioning_attention_strength`.
    pub attention_mask: Option<PathBuf>,
    /// In [0, 1]: how strongly the generated tokens attend to the reference tokens.
    pub conditioning_attention_strength: f64,
    /// Decode stage 1 directly (half the requested height and width).
    pub skip_stage_2: bool,
}

impl IcLoraRequest {
    pub fn validate(&self) -> Result<()> {
        let s = self.conditioning_attention_strength;
        if !(0.0..=1.0).contains(&s) {
            return Err(Error::InvalidArgument(format!(
                "the conditioning attention strength must be in [0, 1], got {s}"
            )));
        }
        for v in &self.video_conditioning {
            if !v.path.is_file() {
                return Err(Error::InvalidArgument(format!(
                    "conditioning video `{}` does not exist",
                    v.path.display()
                )));
            }
            if !(0.0..=1.0).contains(&v.strength) {
                return Err(Error::InvalidArgument(format!(
                    "conditioning video `{}`: strength {} is outside [0, 1]",
                    v.path.display(),
                    v.strength
                )));
            }
        }
        if let Some(m) = &self.attention_mask {
            if !m.is_file() {
                return Err(Error::InvalidArgument(format!(
                    "attention mask video `{}` does not exist",
                    m.display()
                )));
            }
        }
        Ok(())
    }
}

/// The checks of an IC-LoRA run that need no model: the request, readable control and mask
/// videos, and a stage-1 size the LoRAs' `reference_downscale_factor` divides into multiples
/// of 32.
pub fn check_request(
    req: &GenerationRequest,
    ic: &IcLoraRequest,
    reference_downscale_factor: usize,
) -> Result<()> {
    req.validate(true)?;
    ic.validate()?;
    // the control and mask videos must be readable H.264 MP4s: find out before any work
    for v in &ic.video_conditioning {
        crate::media::probe_mp4(&v.path)?;
    }
    if let Some(m) = &ic.attention_mask {
        crate::media::probe_mp4(m)?;
    }
    let (h, w) = (req.height / 2, req.width / 2);
    let s = reference_downscale_factor;
    if h % s != 0 || w % s != 0 {
        return Err(Error::InvalidArgument(format!(
            "the stage-1 size {h}x{w} must be divisible by the LoRA's \
             reference_downscale_factor {s}"
        )));
    }
    if (h / s) % 32 != 0 || (w / s) % 32 != 0 {
        return Err(Error::InvalidArgument(format!(
            "the control video is encoded at {}x{} (the stage-1 size {h}x{w} over the LoRA's \
             reference_downscale_factor {s}): the video VAE needs multiples of 32",
            h / s,
            w / s
        )));
    }
    Ok(())
}

/// The IC-LoRA pipeline.
pub struct ICLoraPipeline {
    /// With the IC-LoRA(s) fused.
    pub stage_1: ModelLedger,
    /// The same checkpoint without them.
    pub stage_2: ModelLedger,
    pub reference_downscale_factor: usize,
}

impl ICLoraPipeline {
    const FLOW: TwoStageFlow = TwoStageFlow::new(Sampler::Euler, ImageConditioningMode::Combined);

    /// `ledger` carries the IC-LoRA(s); their metadata decides the reference downscale factor
    /// (LoRAs declaring different factors cannot be combined).
    pub fn new(ledger: ModelLedger) -> Result<Self> {
        let factor = reference_downscale_factor(&ledger.loras)?;
        let mut stage_2 = ledger.clone();
        stage_2.loras.clear();
        Ok(Self {
            stage_1: ledger,
            stage_2,
            reference_downscale_factor: factor,
        })
    }

    /// Height and width of the output video.
    pub fn output_size(req: &GenerationRequest, ic: &IcLoraRequest) -> (usize, usize) {
        if ic.skip_stage_2 {
            (req.height / 2, req.width / 2)
        } else {
            (req.height, req.width)
        }
    }

    /// The checks made before any model is loaded (see [`check_request`]).
    pub fn validate(&self, req: &GenerationRequest, ic: &IcLoraRequest) -> Result<()> {
        check_request(req, ic, self.reference_downscale_factor)
    }

    /// Stage-1 conditionings: the images, then one reference item per control video (with its
    /// attention strength when it is not full).
    fn stage_1_conditionings(
        &self,
        req: &GenerationRequest,
        ic: &IcLoraRequest,
    ) -> Result<Vec<Box<dyn ConditioningItem>>> {
        let encoder = ConditioningEncoder::new(&self.stage_1)?;
        let (dtype, device) = (self.stage_1.dtype, &self.stage_1.device);
        let shape = req.pixel_shape(2);
        let mut conds = encoder.images(Self::FLOW.mode, &req.images, shape.size())?;
        let pixel_mask = match &ic.attention_mask {
            None => None,
            Some(path) => {
                let pixels =
                    load_video_conditioning(path, shape.height, shape.width, req.num_frames)?
                        .to_dtype(dtype)?;
                Some(mask_from_pixels(&pixels)?)
            }
        };
        let scale = self.reference_downscale_factor;
        for v in &ic.video_conditioning {
            let (h, w) = (shape.height / scale, shape.width / scale);
            let latent =
                encoder.encode(&load_video_conditioning(&v.path, h, w, req.num_frames)?)?;
            let strength = ic.conditioning_attention_strength;
            let attention = match &pixel_mask {
                Some(mask) => {
                    let (_, _, f, h, w) = latent.dims5()?;
                    let m = downsample_mask_to_latent(mask, f, h, w)?;
                    Some(AttentionStrength::Tensor(
                        (m.to_dtype(DType::F32)? * strength)?
                            .to_dtype(dtype)?
                            .to_device(device)?,
                    ))
                }
                None if strength < 1.0 => Some(AttentionStrength::Scalar(strength)),
                None => None,
            };
            let item = VideoConditionByReferenceLatent::new(latent, scale, v.strength)?;
            conds.push(match attention {
                Some(a) => Box::new(ConditioningItemAttentionStrengthWrapper::new(
                    Box::new(item),
                    a,
                )),
                None => Box::new(item),
            });
        }
        Ok(conds)
    }

    /// Runs the pipeline; decoded video chunks go to `sink` (at [`Self::output_size`]), the audio
    /// is returned.
    pub fn run(&self, req: &GenerationRequest, ic: &IcLoraRequest, io: RunIo) -> Result<Audio> {
        let RunIo { progress, sink } = io;
        self.validate(req, ic)?;
        let mut noise = PipelineNoise::new(req.noise, req.seed);
        let contexts = encode_prompt(&self.stage_1, req, progress)?;
        progress(ProgressEvent::Stage {
            name: "encode conditionings",
            total: 0,
        });
        let conds1 = self.stage_1_conditionings(req, ic)?;
        let shape1 = req.pixel_shape(2);
        let stage_1 = distilled_stage_1(
            &self.stage_1,
            Sampler::Euler,
            (&shape1, &conds1),
            (&self.stage_1.transformer()?, contexts),
            &mut noise,
            progress,
        )?;
        drop(conds1);
        if ic.skip_stage_2 {
            tracing::info!("IC-LoRA: stage 2 skipped, decoding the half-size stage-1 video");
            let latents = (&stage_1.video, &stage_1.audio);
            return decode_outputs(&self.stage_1, latents, req.tiling.as_ref(), progress, sink);
        }
        let stage_2 = StageTwo {
            ledgers: (&self.stage_1, &self.stage_2),
            flow: Self::FLOW,
            req,
        };
        stage_2.finish(stage_1, None, &mut noise, progress, sink)
    }
}

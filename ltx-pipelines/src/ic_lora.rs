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

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use ltx_core::components::noisers::NoiseGenerator;
use ltx_core::conditioning::{
    AttentionStrength, ConditioningItem, ConditioningItemAttentionStrengthWrapper,
    VideoConditionByReferenceLatent,
};
use ltx_core::loader::SafetensorsFiles;
use ltx_core::types::Audio;

use crate::media::load_video_conditioning;
use crate::ti2vid_one_stage::Sampler;
use crate::ti2vid_two_stages::refine_stage_2;
use crate::utils::constants::DISTILLED_SIGMA_VALUES;
use crate::utils::helpers::{denoise_audio_video, SimpleDenoiser};
use crate::utils::model_ledger::ModelLedger;
use crate::utils::stages::{
    decode_audio_latent, decode_video_chunks, encode_prompt, euler_stage, image_conditionings,
    upsample_for_stage_2, GenerationRequest, ImageConditioningMode, ProgressEvent,
};
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

/// The `reference_downscale_factor` a LoRA's safetensors metadata declares (1 when absent).
pub fn read_reference_downscale_factor(path: &Path) -> Result<usize> {
    let files = SafetensorsFiles::open(&[path])?;
    match files.metadata_entry("reference_downscale_factor") {
        None => Ok(1),
        Some(text) => match text.trim().parse::<usize>() {
            Ok(f) if f >= 1 => Ok(f),
            _ => Err(Error::InvalidArgument(format!(
                "LoRA `{}`: reference_downscale_factor {text:?} is not a positive integer",
                path.display()
            ))),
        },
    }
}

/// The grayscale attention mask of a decoded mask video (`_load_mask_video` after decoding):
/// `pixels` `[B, 3, F, H, W]` in [-1, 1] -> channel mean mapped to [0, 1], `[B, 1, F, H, W]`, in
/// the input dtype (each op rounded to it, as the reference's bf16 arithmetic).
pub fn mask_from_pixels(pixels: &Tensor) -> Result<Tensor> {
    let dtype = pixels.dtype();
    let round = |t: Tensor| -> Result<Tensor> { Ok(t.to_dtype(dtype)?.to_dtype(DType::F32)?) };
    let mean = round(pixels.to_dtype(DType::F32)?.mean_keepdim(1)?)?;
    let shifted = round((mean + 1.0)?)?;
    let halved = round((shifted / 2.0)?)?;
    Ok(halved.clamp(0f32, 1f32)?.to_dtype(dtype)?)
}

/// Averages of `input` over the windows adaptive average pooling gives output cell `i` of `out`
/// cells (`floor(i·n/out) .. ceil((i+1)·n/out)`: area interpolation).
fn area_windows(n: usize, out: usize) -> Vec<(usize, usize)> {
    (0..out)
        .map(|i| (i * n / out, ((i + 1) * n).div_ceil(out)))
        .collect()
}

/// A pixel-space attention mask `[B, 1, F, H, W]` brought to the reference latent grid
/// (`_downsample_mask_to_latent`): area-interpolated to `h_lat x w_lat` per frame, then pixel
/// frame 0 kept for latent frame 0 and the other frames averaged in groups of
/// `(F − 1) / (f_lat − 1)`. Returns `[B, f_lat·h_lat·w_lat]` in token order, in the input dtype
/// (each stage rounded to it, f32 accumulation).
pub fn downsample_mask_to_latent(
    mask: &Tensor,
    f_lat: usize,
    h_lat: usize,
    w_lat: usize,
) -> Result<Tensor> {
    let dtype = mask.dtype();
    let (b, c, f_pix, h, w) = mask.dims5()?;
    if c != 1 || f_lat == 0 || h_lat == 0 || w_lat == 0 || h == 0 || w == 0 || f_pix == 0 {
        return Err(Error::InvalidArgument(format!(
            "attention mask {:?} cannot be brought to a {f_lat}x{h_lat}x{w_lat} latent grid: \
             expected [B, 1, F, H, W]",
            mask.dims()
        )));
    }
    let t = if f_pix > 1 && f_lat > 1 {
        if (f_pix - 1) % (f_lat - 1) != 0 {
            return Err(Error::InvalidArgument(format!(
                "the attention mask has {f_pix} frames, which do not map onto {f_lat} latent \
                 frames ((frames − 1) must be a multiple of {})",
                f_lat - 1
            )));
        }
        Some((f_pix - 1) / (f_lat - 1))
    } else {
        None
    };
    let round = |v: f32| -> f32 {
        match dtype {
            DType::BF16 => half::bf16::from_f32(v).to_f32(),
            DType::F16 => half::f16::from_f32(v).to_f32(),
            _ => v,
        }
    };
    let data: Vec<f32> = mask.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let (rows, cols) = (area_windows(h, h_lat), area_windows(w, w_lat));
    // spatial area interpolation of every frame
    let mut spatial = vec![0f32; b * f_pix * h_lat * w_lat];
    for (bf, frame) in data.chunks_exact(h * w).enumerate() {
        for (i, &(r0, r1)) in rows.iter().enumerate() {
            for (j, &(c0, c1)) in cols.iter().enumerate() {
                let mut sum = 0f32;
                for r in r0..r1 {
                    sum += frame[r * w + c0..r * w + c1].iter().sum::<f32>();
                }
                let area = ((r1 - r0) * (c1 - c0)) as f32;
                spatial[(bf * h_lat + i) * w_lat + j] = round(sum / area);
            }
        }
    }
    let plane = h_lat * w_lat;
    let frames_out = if t.is_some() { f_lat } else { 1 };
    let mut out = Vec::with_capacity(b * frames_out * plane);
    for bi in 0..b {
        let clip = &spatial[bi * f_pix * plane..(bi + 1) * f_pix * plane];
        out.extend_from_slice(&clip[..plane]);
        if let Some(t) = t {
            for g in 0..f_lat - 1 {
                for p in 0..plane {
                    let sum: f32 = (0..t).map(|k| clip[(1 + g * t + k) * plane + p]).sum();
                    out.push(round(sum / t as f32));
                }
            }
        }
    }
    Ok(Tensor::from_vec(out, (b, frames_out * plane), mask.device())?.to_dtype(dtype)?)
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
    /// `ledger` carries the IC-LoRA(s); their metadata decides the reference downscale factor
    /// (LoRAs declaring different factors cannot be combined).
    pub fn new(ledger: ModelLedger) -> Result<Self> {
        let mut factor = 1;
        for lora in &ledger.loras {
            let f = read_reference_downscale_factor(&lora.path)?;
            if f != 1 {
                if factor != 1 && factor != f {
                    return Err(Error::InvalidArgument(format!(
                        "LoRA `{}` declares reference_downscale_factor {f}, another LoRA {factor}: \
                         LoRAs with different reference scales cannot be combined",
                        lora.path.display()
                    )));
                }
                factor = f;
            }
        }
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

    /// The checks made before any model is loaded.
    pub fn validate(&self, req: &GenerationRequest, ic: &IcLoraRequest) -> Result<()> {
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
        let s = self.reference_downscale_factor;
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

    /// Stage-1 conditionings: the images, then one reference item per control video (with its
    /// attention strength when it is not full).
    fn stage_1_conditionings(
        &self,
        req: &GenerationRequest,
        ic: &IcLoraRequest,
        encoder: &ltx_core::model::video_vae::VideoEncoder,
    ) -> Result<Vec<Box<dyn ConditioningItem>>> {
        let (dtype, device) = (self.stage_1.dtype, self.stage_1.device.clone());
        let shape = req.pixel_shape(2);
        let mut conds = image_conditionings(
            &req.images,
            shape.height,
            shape.width,
            encoder,
            dtype,
            &device,
        )?;
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
            let pixels = load_video_conditioning(
                &v.path,
                shape.height / scale,
                shape.width / scale,
                req.num_frames,
            )?
            .to_dtype(dtype)?
            .to_device(&device)?;
            let latent = encoder.forward(&pixels)?;
            let strength = ic.conditioning_attention_strength;
            let attention = match &pixel_mask {
                Some(mask) => {
                    let (_, _, f, h, w) = latent.dims5()?;
                    let m = downsample_mask_to_latent(mask, f, h, w)?;
                    Some(AttentionStrength::Tensor(
                        (m.to_dtype(DType::F32)? * strength)?
                            .to_dtype(dtype)?
                            .to_device(&device)?,
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
    pub fn run(
        &self,
        req: &GenerationRequest,
        ic: &IcLoraRequest,
        progress: &mut dyn FnMut(ProgressEvent),
        sink: &mut dyn FnMut(Tensor) -> Result<()>,
    ) -> Result<Audio> {
        self.validate(req, ic)?;
        let (dtype, device): (DType, Device) = (self.stage_1.dtype, self.stage_1.device.clone());
        let mut noise = NoiseGenerator::new(req.seed);
        let (v_ctx, a_ctx) = encode_prompt(&self.stage_1, req, progress)?;

        progress(ProgressEvent::Stage {
            name: "encode conditionings",
            total: 0,
        });
        let conds1 = {
            let encoder = self.stage_1.video_encoder()?;
            self.stage_1_conditionings(req, ic, &encoder)?
        };
        let shape1 = req.pixel_shape(2);
        let (video1, audio1) = {
            let transformer = self.stage_1.transformer()?;
            let mut denoiser = SimpleDenoiser {
                transformer: &transformer,
                video_context: v_ctx.clone(),
                audio_context: a_ctx.clone(),
            };
            let sigmas = Tensor::new(&DISTILLED_SIGMA_VALUES, &device)?;
            progress(ProgressEvent::Stage {
                name: "denoise (stage 1)",
                total: sigmas.dim(0)? - 1,
            });
            let out = denoise_audio_video(
                &shape1,
                &conds1,
                &mut noise,
                &mut euler_stage(&sigmas, &mut denoiser, progress),
                dtype,
                &device,
                1.0,
                None,
                None,
            )?;
            out
        };
        drop(conds1);

        if ic.skip_stage_2 {
            tracing::info!("IC-LoRA: stage 2 skipped, decoding the half-size stage-1 video");
            decode_video_chunks(
                &self.stage_1,
                &video1.latent,
                req.tiling.as_ref(),
                progress,
                sink,
            )?;
            return decode_audio_latent(&self.stage_1, &audio1.latent, progress);
        }

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
        let (video2, audio2) = {
            let transformer = self.stage_2.transformer()?;
            let mut denoiser = SimpleDenoiser {
                transformer: &transformer,
                video_context: v_ctx,
                audio_context: a_ctx,
            };
            refine_stage_2(
                Sampler::Euler,
                &self.stage_2,
                &shape2,
                &conds2,
                &mut noise,
                &mut denoiser,
                (&upscaled, &audio1.latent),
                progress,
            )?
        };
        decode_video_chunks(
            &self.stage_2,
            &video2.latent,
            req.tiling.as_ref(),
            progress,
            sink,
        )?;
        decode_audio_latent(&self.stage_2, &audio2.latent, progress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn area_windows_cover_the_input() {
        assert_eq!(area_windows(4, 2), vec![(0, 2), (2, 4)]);
        // non-integer ratio: overlapping windows as adaptive average pooling
        assert_eq!(area_windows(5, 3), vec![(0, 2), (1, 4), (3, 5)]);
    }

    #[test]
    fn mask_frames_must_fit_the_latent_grid() -> Result<()> {
        let m = Tensor::ones((1, 1, 10, 4, 4), DType::F32, &Device::Cpu)?;
        assert!(downsample_mask_to_latent(&m, 3, 1, 1).is_err());
        let m = Tensor::ones((1, 1, 9, 4, 4), DType::F32, &Device::Cpu)?;
        let out = downsample_mask_to_latent(&m, 3, 2, 2)?;
        assert_eq!(out.dims(), &[1, 12]);
        Ok(())
    }
}

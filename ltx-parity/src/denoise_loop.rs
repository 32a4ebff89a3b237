//! `denoise_loop` fixtures: `denoise_audio_video` with the Euler loop (one conditional pass, the
//! CFG guider or the multimodal guider), the Euler ancestral loop or the res_2s loop, on a tiny audio-video transformer, the reference's noise replayed.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use ltx_core::components::diffusion_steps::EulerAncestralDiffusionStep;
use ltx_core::components::guiders::{CfgGuider, MultiModalGuiderFactory};
use ltx_core::conditioning::{ConditioningItem, VideoConditionByLatentIndex};
use ltx_core::loader::StateDict;
use ltx_core::model::transformer::{
    ltxv_model_comfy_renaming_map, LtxModel, LtxModelConfig, LtxModelType, X0Model,
};
use ltx_core::types::VideoPixelShape;
use ltx_pipelines::utils::denoisers::{
    DenoisingFunc, GuiderDenoiser, MultiModalDenoiser, SimpleDenoiser,
};
use ltx_pipelines::utils::helpers::{denoise_audio_video, StageAudio, StageInputs};
use ltx_pipelines::utils::samplers::{
    euler_ancestral_denoising_loop, euler_denoising_loop, res2s_audio_video_denoising_loop,
    Res2sOptions, SingleStreamSde,
};
use ltx_pipelines::utils::types::{NoiseSource, ReplayNoise};
use serde_json::Value;

use super::guider::multimodal_params;
use super::{Fixture, Outputs};
use crate::Result;

pub(super) fn run(fx: &Fixture, inputs: &Arc<StateDict>, device: &Device) -> Result<Outputs> {
    // the loop denoises both streams (`StageAudio::FRESH`): only an audio-video model runs it
    let kind = super::transformer::model_type(fx)?;
    if kind != LtxModelType::AudioVideo {
        return Err(fx.bad("denoise_loop fixtures run an audio_video transformer"));
    }
    let cfg = LtxModelConfig::from_checkpoint_config(&fx.config, kind)?;
    let sd = fx.weights(&ltxv_model_comfy_renaming_map())?;
    let x0 = X0Model {
        velocity_model: LtxModel::new(&cfg, kind, sd.var_builder(DType::F32, device))?,
    };
    sd.report_unused("transformer");
    let mut outputs = run_with_model(fx, inputs, &x0, DType::F32, device, None)?;
    // the guidance passes batched in one call, as the GPU runs them, checked against the same
    // reference outputs
    let guidance = fx.call_value("guidance").unwrap_or(&Value::Null);
    if guidance["kind"].as_str() == Some("multimodal") {
        let batched = run_with_model(fx, inputs, &x0, DType::F32, device, Some(true))?;
        outputs.extend(
            batched
                .into_iter()
                .map(|(name, t)| (format!("{name}@batched_passes"), t)),
        );
    }
    Ok(outputs)
}

/// The fixture's loop on an already built transformer whose weights are in `dtype` (the
/// contexts and latents follow it): what `ltx bench step` times. `batch_passes` overrides the
/// multimodal denoiser's choice of one batched call per step.
pub fn run_with_model(
    fx: &Fixture,
    inputs: &Arc<StateDict>,
    x0: &X0Model,
    dtype: DType,
    device: &Device,
    batch_passes: Option<bool>,
) -> Result<Outputs> {
    let input =
        |name: &str| -> Result<Tensor> { Ok(fx.input(inputs, name, device)?.to_dtype(dtype)?) };
    let shape = VideoPixelShape {
        batch: 1,
        frames: fx.call_usize("frames")?,
        height: fx.call_usize("height")?,
        width: fx.call_usize("width")?,
        fps: fx.call_f64("fps")?,
    };
    let sigmas: Vec<f32> = fx
        .call_array("sigmas")?
        .iter()
        .map(|v| v.as_f64().map(|x| x as f32))
        .collect::<Option<_>>()
        .ok_or_else(|| fx.bad("sigmas must be numbers"))?;
    let sigmas = Tensor::new(sigmas.as_slice(), device)?;
    let mut noises = Vec::new();
    // the recorded draws keep their dtype (the res_2s loop draws in f64)
    while inputs.contains(&format!("noise_{}", noises.len())) {
        let draw = inputs.raw_tensor(&format!("noise_{}", noises.len()), device)?;
        // f32 draws follow the model's dtype off the CPU as the reference's noiser does
        let draw = match draw.dtype() {
            DType::F64 => draw,
            _ => draw.to_dtype(dtype)?,
        };
        noises.push(draw);
    }
    let mut noise = ReplayNoise::new(noises);
    let (vc, ac) = (input("video_context")?, input("audio_context")?);
    // the negative contexts of the guided kinds
    let negatives = || -> Result<(Tensor, Tensor)> {
        Ok((input("video_context_neg")?, input("audio_context_neg")?))
    };
    let mut conditionings: Vec<Box<dyn ConditioningItem>> = Vec::new();
    if inputs.contains("cond_latent") {
        conditionings.push(Box::new(VideoConditionByLatentIndex::new(
            input("cond_latent")?,
            fx.call_f64("cond_strength")?,
            0,
        )?));
    }
    let guidance = fx.call_value("guidance").unwrap_or(&Value::Null);
    let keys = |known: &[&str]| fx.check_keys(guidance, "call.guidance", known);
    let mut denoiser: Box<dyn DenoisingFunc> = match guidance["kind"].as_str() {
        Some("simple") => {
            keys(&["kind"])?;
            Box::new(SimpleDenoiser::new(x0, (vc.clone(), ac.clone())))
        }
        Some("cfg") => {
            keys(&["kind", "cfg_scale"])?;
            let (vn, an) = negatives()?;
            Box::new(GuiderDenoiser {
                transformer: x0,
                guider: CfgGuider::new(
                    guidance["cfg_scale"]
                        .as_f64()
                        .ok_or_else(|| fx.bad("guidance.cfg_scale must be a number"))?,
                )?,
                video_context: (vc.clone(), vn),
                audio_context: (ac.clone(), an),
            })
        }
        Some("multimodal") => {
            keys(&["kind", "video", "audio"])?;
            let (vn, an) = negatives()?;
            let params =
                |m: &str| multimodal_params(fx, &guidance[m], &format!("call.guidance.{m}"));
            let mut denoiser = MultiModalDenoiser::new(
                x0,
                MultiModalGuiderFactory::constant(params("video")?, Some(vn))?,
                Some(MultiModalGuiderFactory::constant(
                    params("audio")?,
                    Some(an),
                )?),
                (vc, ac),
            );
            if let Some(batch) = batch_passes {
                denoiser.batch_passes = batch;
            }
            Box::new(denoiser)
        }
        other => return Err(fx.bad(format!("unknown guidance kind {other:?}"))),
    };
    enum Loop {
        Euler,
        Ancestral(EulerAncestralDiffusionStep),
        Res2s,
    }
    let lp = match fx.call_str("loop")? {
        "euler" => Loop::Euler,
        "euler_ancestral" => Loop::Ancestral(EulerAncestralDiffusionStep::new(
            fx.call_f64("eta")?,
            fx.call_f64("s_noise")?,
        )?),
        "res2s" => Loop::Res2s,
        other => return Err(fx.bad(format!("unknown loop `{other}`"))),
    };
    let noise_scale = match fx.call_value("noise_scale") {
        None => 1.0,
        Some(v) => v
            .as_f64()
            .ok_or_else(|| fx.bad("call.noise_scale must be a number"))?,
    };
    // the res_2s loop draws its SDE noise from the same recorded sequence, after the two initial
    // draws of the noiser
    let mut run_loop = |v, a, noise: &mut dyn NoiseSource| match &lp {
        Loop::Res2s => res2s_audio_video_denoising_loop(
            &sigmas,
            v,
            a,
            denoiser.as_mut(),
            &mut SingleStreamSde(noise),
            Res2sOptions {
                model_dtype: dtype,
                ..Default::default()
            },
            &mut |_, _| {},
        ),
        Loop::Ancestral(stepper) => euler_ancestral_denoising_loop(
            &sigmas,
            v,
            a,
            denoiser.as_mut(),
            stepper,
            noise,
            dtype,
            &mut |_, _| {},
        ),
        Loop::Euler => euler_denoising_loop(&sigmas, v, a, denoiser.as_mut(), &mut |_, _| {}),
    };
    let inputs = StageInputs {
        shape: &shape,
        conditionings: &conditionings,
        noise_scale,
        initial_video: None,
        audio: StageAudio::FRESH,
        dtype,
        device,
    };
    let (video, audio) = denoise_audio_video(&inputs, &mut noise, &mut run_loop)?;
    if noise.remaining() != 0 {
        return Err(fx.bad(format!(
            "{} recorded noise draws left unused",
            noise.remaining()
        )));
    }
    Ok(vec![
        ("video_latent".into(), video.latent),
        ("audio_latent".into(), audio.latent),
    ])
}

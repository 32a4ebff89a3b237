//! `ic_lora_mask` and `retake_mask` fixtures: the attention mask the IC-LoRA pipeline builds from a
//! mask video, and the retake pipeline's time-region denoise masks.

use std::sync::Arc;

use candle_core::{DType, Device};
use ltx_core::conditioning::ConditioningItem;
use ltx_core::loader::StateDict;
use ltx_core::tools::LatentTools;
use ltx_core::types::VideoPixelShape;

use super::{Fixture, Outputs};
use crate::Result;
use ltx_core::conditioning::TemporalRegionMask;
use ltx_pipelines::iclora_utils::{downsample_mask_to_latent, mask_from_pixels};
use ltx_pipelines::utils::helpers::latent_tools;

pub(super) fn run_ic_lora(
    fx: &Fixture,
    inputs: &Arc<StateDict>,
    device: &Device,
) -> Result<Outputs> {
    // the fixture stores bf16 pixels; the arithmetic is checked in bf16 as the pipeline runs it
    let pixels = fx.input(inputs, "pixels", device)?.to_dtype(DType::BF16)?;
    let mask = mask_from_pixels(&pixels)?;
    let latent = downsample_mask_to_latent(
        &mask,
        fx.call_usize("f_lat")?,
        fx.call_usize("h_lat")?,
        fx.call_usize("w_lat")?,
    )?;
    let strength = fx.call_f64("strength")?;
    let latent = (latent.to_dtype(DType::F32)? * strength)?.to_dtype(DType::BF16)?;
    Ok(vec![
        ("mask".into(), mask.to_dtype(DType::F32)?),
        ("latent_mask".into(), latent.to_dtype(DType::F32)?),
    ])
}

pub(super) fn run_retake(fx: &Fixture, device: &Device) -> Result<Outputs> {
    let fps = fx.call_f64("fps")?;
    let shape = VideoPixelShape {
        batch: 1,
        frames: fx.call_usize("frames")?,
        height: fx.call_usize("height")?,
        width: fx.call_usize("width")?,
        fps,
    };
    let (vtools, atools) = latent_tools(&shape)?;
    let mut out = Outputs::new();
    for (i, w) in fx.call_array("windows")?.iter().enumerate() {
        let pair = w
            .as_array()
            .and_then(|p| Some((p.first()?.as_f64()?, p.get(1)?.as_f64()?)))
            .ok_or_else(|| fx.bad(format!("call.windows[{i}] must be [start, end]")))?;
        let m = TemporalRegionMask {
            start_time: pair.0,
            end_time: pair.1,
            fps,
        };
        let v = m.apply_to(
            &vtools.create_initial_state(device, DType::F32, None)?,
            &vtools,
        )?;
        let a = m.apply_to_audio(
            &atools.create_initial_state(device, DType::F32, None)?,
            &atools,
        )?;
        out.push((format!("video_{i}"), v.denoise_mask));
        out.push((format!("audio_{i}"), a.denoise_mask));
    }
    Ok(out)
}

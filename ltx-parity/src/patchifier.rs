//! `patchifier` fixtures: `call.op` = `video` (patchifier + pixel coordinates), `audio`
//! (audio patchifier variants) or `latent_tools` (initial states and latent shapes).

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use ltx_core::components::patchifiers::{get_pixel_coords, AudioPatchifier, VideoLatentPatchifier};
use ltx_core::loader::StateDict;
use ltx_core::tools::{AudioLatentTools, LatentTools, VideoLatentTools};
use ltx_core::types::{
    AudioLatentParams, AudioLatentShape, SpatioTemporalScaleFactors, VideoLatentShape,
    VideoPixelShape,
};
use serde_json::Value;

use super::{Fixture, Outputs};
use crate::Result;

pub(super) fn run(fx: &Fixture, inputs: &Arc<StateDict>, device: &Device) -> Result<Outputs> {
    match fx.call_str("op")? {
        "video" => video(fx, inputs, device),
        "audio" => audio(fx, inputs, device),
        "latent_tools" => latent_tools(fx, inputs, device),
        other => Err(fx.bad(format!("unknown patchifier op `{other}`"))),
    }
}

pub(super) fn dtype_of(fx: &Fixture, name: &str) -> Result<DType> {
    match name {
        "float32" => Ok(DType::F32),
        "bfloat16" => Ok(DType::BF16),
        "float16" => Ok(DType::F16),
        "float64" => Ok(DType::F64),
        other => Err(fx.bad(format!("unknown dtype `{other}`"))),
    }
}

pub(super) fn usizes(fx: &Fixture, v: &Value, what: &str) -> Result<Vec<usize>> {
    v.as_array()
        .and_then(|a| a.iter().map(|x| x.as_u64().map(|x| x as usize)).collect())
        .ok_or_else(|| fx.bad(format!("{what} must be a list of non-negative integers")))
}

fn video(fx: &Fixture, inputs: &Arc<StateDict>, device: &Device) -> Result<Outputs> {
    let latent = fx.input(inputs, "latent", device)?;
    let shape = VideoLatentShape::from_dims(latent.dims())?;
    // `call.scales`: named factor triples (the names make the output names)
    let scales = fx
        .call_value("scales")
        .and_then(Value::as_object)
        .ok_or_else(|| fx.bad("call.scales must be an object"))?;
    let patch_sizes = fx.call_value("patch_sizes").unwrap_or(&Value::Null);
    let mut out = Vec::new();
    for p in usizes(fx, patch_sizes, "call.patch_sizes")? {
        let pf = VideoLatentPatchifier::new(p)?;
        let tokens = pf.patchify(&latent)?;
        out.push((
            format!("unpatchified_p{p}"),
            pf.unpatchify(&tokens, &shape)?,
        ));
        out.push((format!("tokens_p{p}"), tokens));
        let count = pf.get_token_count(&shape) as i64;
        out.push((format!("token_count_p{p}"), Tensor::new(&[count], device)?));
        let bounds = pf.get_patch_grid_bounds(&shape, device)?;
        for (name, factors) in scales {
            let f = usizes(fx, factors, "call.scales entry")?;
            let [time, width, height] = f[..] else {
                return Err(fx.bad("scale factors must be [time, width, height]"));
            };
            let sf = SpatioTemporalScaleFactors {
                time,
                width,
                height,
            };
            for causal in [false, true] {
                out.push((
                    format!("pixel_coords_p{p}_{name}_causal{}", causal as u8),
                    get_pixel_coords(&bounds, sf, causal)?,
                ));
            }
        }
        out.push((format!("bounds_p{p}"), bounds));
    }
    Ok(out)
}

fn audio(fx: &Fixture, inputs: &Arc<StateDict>, device: &Device) -> Result<Outputs> {
    let latent = fx.input(inputs, "latent", device)?;
    let shape = AudioLatentShape::from_dims(latent.dims())?;
    let mut out = Vec::new();
    for (i, v) in fx.call_array("variants")?.iter().enumerate() {
        fx.check_keys(
            v,
            &format!("call.variants[{i}]"),
            &[
                "patch_size",
                "sample_rate",
                "hop_length",
                "audio_latent_downsample_factor",
                "shift",
                "is_causal",
            ],
        )?;
        let int = |k: &str| v.get(k).and_then(Value::as_u64).map(|x| x as usize);
        let mut pf = AudioPatchifier::new(int("patch_size").unwrap_or(1));
        pf.sample_rate = int("sample_rate").unwrap_or(pf.sample_rate);
        pf.hop_length = int("hop_length").unwrap_or(pf.hop_length);
        pf.audio_latent_downsample_factor =
            int("audio_latent_downsample_factor").unwrap_or(pf.audio_latent_downsample_factor);
        pf.shift = int("shift").unwrap_or(0);
        pf.is_causal = v.get("is_causal").and_then(Value::as_bool).unwrap_or(true);
        let tokens = pf.patchify(&latent)?;
        out.push((format!("unpatchified_{i}"), pf.unpatchify(&tokens, &shape)?));
        out.push((format!("tokens_{i}"), tokens));
        out.push((
            format!("bounds_{i}"),
            pf.get_patch_grid_bounds(&shape, device)?,
        ));
    }
    Ok(out)
}

fn latent_tools(fx: &Fixture, inputs: &Arc<StateDict>, device: &Device) -> Result<Outputs> {
    let mut out = Vec::new();
    let push_state = |out: &mut Outputs, prefix: &str, st: &ltx_core::types::LatentState| {
        out.push((format!("{prefix}_latent"), st.latent.clone()));
        out.push((format!("{prefix}_clean_latent"), st.clean_latent.clone()));
        out.push((format!("{prefix}_denoise_mask"), st.denoise_mask.clone()));
        out.push((format!("{prefix}_positions"), st.positions.clone()));
    };
    for (i, spec) in fx.call_array("video")?.iter().enumerate() {
        let what = format!("call.video[{i}]");
        let known = ["target", "patch", "fps", "causal_fix", "dtype", "initial"];
        fx.check_keys(spec, &what, &known)?;
        let shape = VideoLatentShape::from_dims(&usizes(fx, &spec["target"], "target")?)?;
        let patch = spec.get("patch").and_then(Value::as_u64).unwrap_or(1) as usize;
        let fps = spec["fps"].as_f64().ok_or_else(|| fx.bad("fps"))?;
        let mut tools = VideoLatentTools::new(VideoLatentPatchifier::new(patch)?, shape, fps);
        tools.causal_fix = spec["causal_fix"].as_bool().unwrap_or(true);
        let dtype = dtype_of(fx, spec["dtype"].as_str().unwrap_or("float32"))?;
        // `initial`: whether the reference drew a stored initial latent
        let name = format!("video_initial_{i}");
        if spec["initial"].as_bool() != Some(inputs.contains(&name)) {
            return Err(fx.bad(format!(
                "{what}.initial must be a boolean saying whether `input.{name}` is stored"
            )));
        }
        let initial = if inputs.contains(&name) {
            Some(inputs.raw_tensor(&name, device)?)
        } else {
            None
        };
        let st = tools.create_initial_state(device, dtype, initial.as_ref())?;
        let back = tools.unpatchify(&st)?;
        out.push((format!("video_{i}_unpatchified_latent"), back.latent));
        out.push((format!("video_{i}_unpatchified_mask"), back.denoise_mask));
        push_state(&mut out, &format!("video_{i}"), &st);
    }
    for (i, spec) in fx.call_array("audio")?.iter().enumerate() {
        let what = format!("call.audio[{i}]");
        fx.check_keys(spec, &what, &["target", "dtype", "initial"])?;
        // the reference always draws the audio initial latent
        if spec["initial"].as_bool() != Some(true) {
            return Err(fx.bad(format!("{what}.initial must be true")));
        }
        let shape = AudioLatentShape::from_dims(&usizes(fx, &spec["target"], "target")?)?;
        let tools = AudioLatentTools {
            patchifier: AudioPatchifier::new(1),
            target_shape: shape,
        };
        let dtype = dtype_of(fx, spec["dtype"].as_str().unwrap_or("float32"))?;
        let initial = inputs.raw_tensor(&format!("audio_initial_{i}"), device)?;
        let st = tools.create_initial_state(device, dtype, Some(&initial))?;
        push_state(&mut out, &format!("audio_{i}"), &st);
    }
    let (mut dims, mut frames) = (Vec::new(), Vec::new());
    for px in fx.call_array("pixel_shapes")? {
        let v = px.as_array().ok_or_else(|| fx.bad("pixel shape"))?;
        let n = |i: usize| v.get(i).and_then(Value::as_f64).unwrap_or(f64::NAN);
        let px = VideoPixelShape {
            batch: n(0) as usize,
            frames: n(1) as usize,
            height: n(2) as usize,
            width: n(3) as usize,
            fps: n(4),
        };
        let lat = VideoLatentShape::from_pixel_shape(&px, 128, Default::default());
        dims.extend(lat.dims().map(|d| d as i64));
        frames.push(
            AudioLatentShape::from_video_pixel_shape(&px, AudioLatentParams::default())?.frames
                as i64,
        );
    }
    let rows = frames.len();
    out.push((
        "pixel_to_latent_dims".into(),
        Tensor::from_vec(dims, (rows, 5), device)?,
    ));
    out.push(("pixel_to_audio_frames".into(), Tensor::new(frames, device)?));
    let mut by_duration = Vec::new();
    for d in fx.call_array("durations")? {
        let d = d.as_f64().ok_or_else(|| fx.bad("duration"))?;
        by_duration.push(
            AudioLatentShape::from_duration(1, d, AudioLatentParams::default())?.frames as i64,
        );
    }
    out.push((
        "duration_to_audio_frames".into(),
        Tensor::new(by_duration, device)?,
    ));
    Ok(out)
}

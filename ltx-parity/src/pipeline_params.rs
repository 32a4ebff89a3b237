//! `pipeline_params` fixtures: the presets, `detect_params` on the fixture file's own metadata,
//! and the default negative prompt.

use candle_core::{Device, Tensor};
use ltx_core::components::guiders::MultiModalGuiderParams;
use serde_json::Value;

use super::{Fixture, Outputs};
use crate::Result;
use ltx_pipelines::utils::constants::{
    detect_params, PipelineParams, DEFAULT_IMAGE_CRF, DEFAULT_LORA_STRENGTH,
    DEFAULT_NEGATIVE_PROMPT, VIDEO_LATENT_CHANNELS,
};

fn params_outputs(
    out: &mut Outputs,
    prefix: &str,
    p: &PipelineParams,
    device: &Device,
) -> Result<()> {
    let values = [
        p.seed as f64,
        p.stage_1_height as f64,
        p.stage_1_width as f64,
        p.num_frames as f64,
        p.frame_rate,
        p.num_inference_steps as f64,
        p.stage_2_height() as f64,
        p.stage_2_width() as f64,
    ];
    out.push((format!("{prefix}_values"), Tensor::new(&values, device)?));
    for (modality, g) in [
        ("video", &p.video_guider_params),
        ("audio", &p.audio_guider_params),
    ] {
        out.push((
            format!("{prefix}_{modality}_guider"),
            guider_values(g, device)?,
        ));
        let blocks: Vec<i64> = g.stg_blocks.iter().flatten().map(|&b| b as i64).collect();
        out.push((
            format!("{prefix}_{modality}_stg_blocks"),
            Tensor::from_vec(blocks.clone(), blocks.len(), device)?,
        ));
    }
    Ok(())
}

fn guider_values(g: &MultiModalGuiderParams, device: &Device) -> Result<Tensor> {
    let v = [
        g.cfg_scale,
        g.stg_scale,
        g.rescale_scale,
        g.modality_scale,
        g.skip_step as f64,
    ];
    Ok(Tensor::new(&v, device)?)
}

pub(super) fn run(fx: &Fixture, device: &Device) -> Result<Outputs> {
    let expect = |key: &str, want: f64| -> Result<()> {
        match fx.call_value(key).and_then(Value::as_f64) {
            Some(v) if v == want => Ok(()),
            other => Err(fx.bad(format!("call.{key} = {other:?}, ltx-rs has {want}"))),
        }
    };
    expect("default_lora_strength", DEFAULT_LORA_STRENGTH)?;
    expect("default_image_crf", DEFAULT_IMAGE_CRF as f64)?;
    expect("video_latent_channels", VIDEO_LATENT_CHANNELS as f64)?;
    // `call.model_version`: the `model_version` metadata the reference's `detect_params` saw,
    // which is this file's own (read below through `fx.files()`)
    let stated = fx.call_value("model_version").and_then(Value::as_str);
    let stored = fx.files().metadata_entry("model_version");
    if stated != stored {
        return Err(fx.bad(format!(
            "call.model_version {stated:?} is not the file's `model_version` metadata {stored:?}"
        )));
    }
    let mut out = Vec::new();
    params_outputs(&mut out, "ltx_2", &PipelineParams::ltx_2(), device)?;
    params_outputs(&mut out, "ltx_2_3", &PipelineParams::ltx_2_3(), device)?;
    params_outputs(
        &mut out,
        "ltx_2_3_hq",
        &PipelineParams::ltx_2_3_hq(),
        device,
    )?;
    params_outputs(&mut out, "detected", &detect_params(fx.files()), device)?;
    let prompt = DEFAULT_NEGATIVE_PROMPT.as_bytes();
    out.push((
        "negative_prompt".into(),
        Tensor::from_slice(prompt, prompt.len(), device)?,
    ));
    Ok(out)
}

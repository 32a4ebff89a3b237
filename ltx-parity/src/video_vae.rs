//! `video_encoder` / `video_decoder` fixtures.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use ltx_core::loader::StateDict;
use ltx_core::model::video_vae::{
    decoder::to_uint8_frames, vae_decoder_keys_filter, vae_encoder_keys_filter, DecodeInputs,
    VideoDecoder, VideoEncoder, VideoVaeConfig,
};
use serde_json::Value;

use super::{Fixture, Outputs};
use crate::Result;

pub(super) fn run_encoder(
    fx: &Fixture,
    inputs: &Arc<StateDict>,
    device: &Device,
) -> Result<Outputs> {
    Ok(vec![("latent".to_string(), encode(fx, inputs, device)?)])
}

/// Output `video`, plus `frames` (the uint8 mapping) when the fixture stores them.
pub(super) fn run_decoder(
    fx: &Fixture,
    inputs: &Arc<StateDict>,
    expected: &Arc<StateDict>,
    device: &Device,
) -> Result<Outputs> {
    let video = decode(fx, inputs, device)?;
    let mut outs = Vec::new();
    if expected.contains("frames") {
        outs.push(("frames".to_string(), to_uint8_frames(&video)?));
    }
    outs.insert(0, ("video".to_string(), video));
    Ok(outs)
}

fn encode(fx: &Fixture, inputs: &Arc<StateDict>, device: &Device) -> Result<Tensor> {
    let cfg = VideoVaeConfig::from_checkpoint_config(&fx.config)?;
    let sd = fx.weights(&vae_encoder_keys_filter())?;
    let encoder = VideoEncoder::new(&cfg, sd.var_builder(DType::F32, device))?;
    sd.report_unused("video_encoder");
    let video = fx.tensor(inputs, "video", device, true)?.expect("required");
    Ok(match fx.tiling()? {
        None => encoder.forward(&video)?,
        Some(t) => encoder.tiled_encode(&video, &t)?,
    })
}

fn decode(fx: &Fixture, inputs: &Arc<StateDict>, device: &Device) -> Result<Tensor> {
    let cfg = VideoVaeConfig::from_checkpoint_config(&fx.config)?;
    let sd = fx.weights(&vae_decoder_keys_filter())?;
    let decoder = VideoDecoder::new(&cfg, sd.var_builder(DType::F32, device))?;
    sd.report_unused("video_decoder");
    let latent = fx
        .tensor(inputs, "latent", device, true)?
        .expect("required");
    let noise = fx.tensor(inputs, "noise", device, false)?;
    if decoder.has_timestep_conditioning() && noise.is_none() {
        return Err(fx.bad("timestep-conditioned decoder fixture needs `input.noise`"));
    }
    let timestep = match fx.call.get("timestep") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let t = v
                .as_f64()
                .ok_or_else(|| fx.bad(format!("call.timestep is not a number: {v}")))?;
            Some(Tensor::full(t as f32, latent.dim(0)?, device)?)
        }
    };
    Ok(match fx.tiling()? {
        None => decoder.forward(
            &latent,
            DecodeInputs {
                timestep: timestep.as_ref(),
                noise: noise.as_ref(),
                spatial_noise: None,
            },
        )?,
        Some(t) => decoder.tiled_decode_all(&latent, &t, timestep.as_ref(), noise.as_ref())?,
    })
}

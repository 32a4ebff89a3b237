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
    let timestep = match fx.call_value("timestep") {
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

/// The released LTX-2.5 headers (`tests/reference/released_ltx25/*.metadata.json`: config and
/// tensor / parameter counts, no tensor names) against shape-only builds of the Rust models.
/// The released LTX-2.5 headers (`tests/reference/released_ltx25/*.metadata.json`: config and
/// tensor / parameter counts, no tensor names) against shape-only builds of the Rust models.
#[cfg(test)]
pub(crate) mod released_ltx25 {
    use std::collections::BTreeMap;

    use ltx_core::loader::ShapeRecord;
    use serde_json::Value;

    /// A released file's decoded `config` metadata and its header's `(num_tensors, num_parameters)`.
    pub(crate) fn header(name: &str) -> (Value, (usize, usize)) {
        let path = format!(
            "{}/../tests/reference/released_ltx25/{name}.metadata.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let file: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let config =
            serde_json::from_str(file["__metadata__"]["config"].as_str().unwrap()).unwrap();
        let count = |key: &str| file["stats"][key].as_u64().unwrap() as usize;
        (config, (count("num_tensors"), count("num_parameters")))
    }

    /// Tensor names and shapes of a checkpoint, built up one component at a time.
    #[derive(Default)]
    pub(crate) struct Manifest(BTreeMap<String, Vec<usize>>);

    impl Manifest {
        /// Adds what one component read, under the file's keys (`file_key` maps a name the model
        /// asked for to the checkpoint key). A tensor two components share (the latent
        /// statistics) is stored once.
        pub(crate) fn add(&mut self, record: &ShapeRecord, file_key: impl Fn(&str) -> String) {
            for (name, shape) in record.take() {
                let key = file_key(&name);
                if let Some(seen) = self.0.insert(key.clone(), shape.clone()) {
                    assert_eq!(seen, shape, "{key} read with two shapes");
                }
            }
        }

        /// `(tensors, parameters)`.
        pub(crate) fn counts(&self) -> (usize, usize) {
            let params = self.0.values().map(|s| s.iter().product::<usize>()).sum();
            (self.0.len(), params)
        }
    }

    /// `prefix + name`, except the latent statistics, which are stored once under `shared`.
    pub(crate) fn keyed(prefix: &str, shared: &str, name: &str) -> String {
        if name.starts_with("per_channel_statistics.") {
            format!("{shared}{name}")
        } else {
            format!("{prefix}{name}")
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};
    use ltx_core::loader::shape_only_var_builder;

    use super::released_ltx25::{header, keyed, Manifest};
    use super::*;

    /// `ltx-2.5-video-vae-conv-bf16`: encoder + decoder + one copy of the statistics.
    #[test]
    fn ltx25_conv_vae_matches_the_header_counts() {
        let (config, want) = header("ltx-2.5-video-vae-conv-bf16");
        let cfg = VideoVaeConfig::from_checkpoint_config(&config).unwrap();
        let mut manifest = Manifest::default();
        let (vb, record) = shape_only_var_builder(DType::F32, &Device::Cpu);
        drop(VideoEncoder::new(&cfg, vb).unwrap());
        manifest.add(&record, |n| keyed("encoder.", "", n));
        let (vb, record) = shape_only_var_builder(DType::F32, &Device::Cpu);
        drop(VideoDecoder::new(&cfg, vb).unwrap());
        manifest.add(&record, |n| keyed("decoder.", "", n));
        assert_eq!(manifest.counts(), want);
    }
}

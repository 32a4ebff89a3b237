//! `latent_upsampler` fixtures: `call.op` = `forward` or `upsample_video` (with the encoder's
//! statistics as inputs `std_of_means`, `mean_of_means`).

use std::sync::Arc;

use candle_core::{DType, Device};
use ltx_core::loader::StateDict;
use ltx_core::model::upsampler::{
    latent_upsampler_keys, upsample_video, LatentUpsampler, LatentUpsamplerConfig,
};
use ltx_core::model::video_vae::ops::PerChannelStatistics;
use serde_json::Value;

use super::{Fixture, Outputs};
use crate::Result;

pub(super) fn run(fx: &Fixture, inputs: &Arc<StateDict>, device: &Device) -> Result<Outputs> {
    let cfg = LatentUpsamplerConfig::from_checkpoint_config(&fx.config)?;
    let sd = fx.weights(&latent_upsampler_keys())?;
    let model = LatentUpsampler::new(&cfg, sd.var_builder(DType::F32, device))?;
    sd.report_unused("latent_upsampler");
    let latent = fx.input(inputs, "latent", device)?;
    let out = match fx
        .call
        .get("op")
        .and_then(Value::as_str)
        .unwrap_or("forward")
    {
        "forward" => model.forward(&latent)?,
        "upsample_video" => {
            let stats = StateDict::from_tensors(
                [
                    ("std-of-means", fx.input(inputs, "std_of_means", device)?),
                    ("mean-of-means", fx.input(inputs, "mean_of_means", device)?),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            );
            let stats = PerChannelStatistics::new(
                latent.dim(1)?,
                Arc::new(stats).var_builder(DType::F32, device),
            )?;
            upsample_video(&latent, &stats, &model)?
        }
        other => return Err(fx.bad(format!("unknown latent_upsampler op `{other}`"))),
    };
    Ok(vec![("latent".into(), out)])
}

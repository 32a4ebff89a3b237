//! `latent_upsampler` fixtures: `call.op` = `forward` or `upsample_video` (with the encoder's
//! statistics as inputs `std_of_means`, `mean_of_means`).

use std::sync::Arc;

use candle_core::{DType, Device};
use ltx_core::loader::StateDict;
use ltx_core::model::upsampler::{
    latent_upsampler_keys, upsample_video, LatentUpsampler, LatentUpsamplerConfig,
};
use ltx_core::model::video_vae::ops::PerChannelStatistics;

use super::{Fixture, Outputs};
use crate::Result;

pub(super) fn run(fx: &Fixture, inputs: &Arc<StateDict>, device: &Device) -> Result<Outputs> {
    let cfg = LatentUpsamplerConfig::from_checkpoint_config(&fx.config)?;
    let sd = fx.weights(&latent_upsampler_keys())?;
    let model = LatentUpsampler::new(&cfg, sd.var_builder(DType::F32, device))?;
    sd.report_unused("latent_upsampler");
    let latent = fx.input(inputs, "latent", device)?;
    let op = match fx.call_value("op") {
        None => "forward",
        Some(v) => v
            .as_str()
            .ok_or_else(|| fx.bad("call.op must be a string"))?,
    };
    let out = match op {
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

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};
    use ltx_core::loader::shape_only_var_builder;

    use super::*;
    use crate::video_vae::released_ltx25::{header, Manifest};

    /// Both LTX-2.5 upsampler files (bare keys).
    #[test]
    fn ltx25_upsamplers_match_the_header_counts() {
        for name in [
            "ltx-2.5-latent-spatial-upscaler-x2-bf16-1.0",
            "ltx-2.5-latent-temporal-upscaler-x2-bf16-1.0",
        ] {
            let (config, want) = header(name);
            let cfg = LatentUpsamplerConfig::from_checkpoint_config(&config).unwrap();
            let (vb, record) = shape_only_var_builder(DType::F32, &Device::Cpu);
            drop(LatentUpsampler::new(&cfg, vb).unwrap());
            let mut manifest = Manifest::default();
            manifest.add(&record, str::to_string);
            assert_eq!(manifest.counts(), want, "{name}");
        }
    }
}

//! `audio_encoder` / `audio_decoder` fixtures.

use std::sync::Arc;

use candle_core::{DType, Device};
use ltx_core::loader::StateDict;
use ltx_core::model::audio_vae::{
    audio_vae_decoder_keys_filter, audio_vae_encoder_keys_filter, AudioDecoder, AudioEncoder,
    AudioVaeConfig,
};

use super::{Fixture, Outputs};
use crate::Result;

pub(super) fn run_encoder(
    fx: &Fixture,
    inputs: &Arc<StateDict>,
    device: &Device,
) -> Result<Outputs> {
    let cfg = AudioVaeConfig::from_checkpoint_config(&fx.config)?;
    let sd = fx.weights(&audio_vae_encoder_keys_filter())?;
    let encoder = AudioEncoder::new(&cfg, sd.var_builder(DType::F32, device))?;
    sd.report_unused("audio_encoder");
    let mel = fx.input(inputs, "mel", device)?;
    Ok(vec![("latent".into(), encoder.forward(&mel)?)])
}

pub(super) fn run_decoder(
    fx: &Fixture,
    inputs: &Arc<StateDict>,
    device: &Device,
) -> Result<Outputs> {
    let cfg = AudioVaeConfig::from_checkpoint_config(&fx.config)?;
    let sd = fx.weights(&audio_vae_decoder_keys_filter())?;
    let decoder = AudioDecoder::new(&cfg, sd.var_builder(DType::F32, device))?;
    sd.report_unused("audio_decoder");
    let latent = fx.input(inputs, "latent", device)?;
    Ok(vec![("mel".into(), decoder.forward(&latent)?)])
}

pub(super) fn run_vocoder(
    fx: &Fixture,
    inputs: &Arc<StateDict>,
    device: &Device,
) -> Result<Outputs> {
    use ltx_core::model::audio_vae::vocoder::{
        vocoder_keys_filter, Vocoder, VocoderConfig, VocoderModel, VocoderModelConfig,
    };
    let sd = fx.weights(&vocoder_keys_filter())?;
    let vb = sd.var_builder(DType::F32, device);
    let mel = fx.input(inputs, "mel", device)?;
    // `call.generator_only`: one generator built straight from the flat `vocoder` section (the
    // BigVGAN variants the configurator only reaches inside the BWE model)
    let waveform = if let Some(g) = fx.call_value("generator_only") {
        fx.check_keys(g, "call.generator_only", &["apply_final_activation"])?;
        let apply_final = match g.get("apply_final_activation") {
            None => true,
            Some(v) => v.as_bool().ok_or_else(|| {
                fx.bad("call.generator_only.apply_final_activation must be a boolean")
            })?,
        };
        let cfg = VocoderConfig::from_section(&fx.config["vocoder"], "vocoder", apply_final, None)?;
        let vocoder = Vocoder::new(&cfg, vb)?;
        sd.report_unused("vocoder");
        vocoder.forward(&mel)?
    } else {
        let cfg = VocoderModelConfig::from_checkpoint_config(&fx.config)?;
        let vocoder = VocoderModel::new(&cfg, vb)?;
        sd.report_unused("vocoder");
        vocoder.forward(&mel)?
    };
    Ok(vec![("waveform".into(), waveform)])
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};
    use ltx_core::loader::shape_only_var_builder;
    use ltx_core::model::audio_vae::vocoder::{VocoderModel, VocoderModelConfig};

    use super::*;
    use crate::video_vae::released_ltx25::{header, keyed, Manifest};

    /// `ltx-2.5-audio-vae-bf16`: audio encoder + decoder (one copy of the statistics) + the
    /// vocoder with BWE (its kaiser filters and STFT bases are stored tensors).
    #[test]
    fn ltx25_audio_vae_matches_the_header_counts() {
        let (config, want) = header("ltx-2.5-audio-vae-bf16");
        let cfg = AudioVaeConfig::from_checkpoint_config(&config).unwrap();
        let mut manifest = Manifest::default();
        let (vb, record) = shape_only_var_builder(DType::F32, &Device::Cpu);
        drop(AudioEncoder::new(&cfg, vb).unwrap());
        manifest.add(&record, |n| keyed("audio_vae.encoder.", "audio_vae.", n));
        let (vb, record) = shape_only_var_builder(DType::F32, &Device::Cpu);
        drop(AudioDecoder::new(&cfg, vb).unwrap());
        manifest.add(&record, |n| keyed("audio_vae.decoder.", "audio_vae.", n));
        let vocoder = VocoderModelConfig::from_checkpoint_config(&config).unwrap();
        let (vb, record) = shape_only_var_builder(DType::F32, &Device::Cpu);
        drop(VocoderModel::new(&vocoder, vb).unwrap());
        manifest.add(&record, |n| format!("vocoder.{n}"));
        assert_eq!(manifest.counts(), want);
    }
}

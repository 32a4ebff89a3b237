//! `audio_processor` fixtures: resampling and the log-mel front-end.

use std::sync::Arc;

use candle_core::Device;
use ltx_core::loader::StateDict;
use ltx_core::model::audio_vae::ops::{resample, AudioProcessor};

use super::{Fixture, Outputs};
use crate::Result;

pub(super) fn run(fx: &Fixture, inputs: &Arc<StateDict>, device: &Device) -> Result<Outputs> {
    let rate = fx.call_usize("sample_rate")?;
    let target = fx.call_usize("target_sample_rate")?;
    let proc = AudioProcessor::new(
        target,
        fx.call_usize("mel_bins")?,
        fx.call_usize("hop_length")?,
        fx.call_usize("n_fft")?,
        device,
    )?;
    let wav = fx.input(inputs, "waveform", device)?;
    let mut out = vec![("mel".to_string(), proc.waveform_to_mel(&wav, rate)?)];
    if rate != target {
        out.push(("resampled".into(), resample(&wav, rate, target)?));
    }
    Ok(out)
}

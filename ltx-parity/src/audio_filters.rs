//! `audio_filters` fixtures: the vocoder's kaiser-sinc and hann-sinc resampling filters and the
//! resamplers built on them.

use std::sync::Arc;

use candle_core::{Device, Tensor};
use ltx_core::loader::StateDict;
use ltx_core::model::audio_vae::anti_alias::{LowPass1d, UpSample1d};

use super::{Fixture, Outputs};
use crate::Result;

pub(super) fn run(fx: &Fixture, inputs: &Arc<StateDict>, device: &Device) -> Result<Outputs> {
    let ratio = fx.call_usize("ratio")?;
    let taps = fx.call_usize("kernel_size")?;
    let hann_ratio = fx.call_usize("hann_ratio")?;
    let up = UpSample1d::kaiser(ratio, taps, None);
    let down = LowPass1d::downsample(ratio, taps, None);
    let hann = UpSample1d::hann(hann_ratio);
    let x = fx.input(inputs, "x", device)?;
    let vec = |v: &[f32]| Tensor::new(v, device);
    Ok(vec![
        ("kaiser_up_filter".into(), vec(&up.filter)?),
        ("kaiser_down_filter".into(), vec(&down.filter)?),
        ("hann_filter".into(), vec(&hann.filter)?),
        ("up".into(), up.forward(&x)?),
        ("down".into(), down.forward(&x)?),
        ("hann_up".into(), hann.forward(&x)?),
    ])
}

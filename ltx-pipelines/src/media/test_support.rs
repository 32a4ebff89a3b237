//! Test inputs shared by the media tests: a moving RGB pattern, multi-channel sines and an image
//! distance. No counterpart in the reference.

use candle_core::{Device, Tensor};
use ltx_core::types::Audio;

/// A smooth moving pattern (compressible, like real video) `[F, H, W, 3]`.
pub fn pattern(frames: usize, height: usize, width: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(frames * height * width * 3);
    for f in 0..frames {
        for y in 0..height {
            for x in 0..width {
                let t = f as f32 * 0.3;
                v.push((128.0 + 100.0 * ((x as f32 * 0.1 + t).sin())) as u8);
                v.push((128.0 + 100.0 * ((y as f32 * 0.13 - t).cos())) as u8);
                v.push(((x + y + 4 * f) % 256) as u8);
            }
        }
    }
    v
}

/// `[1, channels, round(rate * seconds)]` audio: channel `c` a sine of `hz * (c + 1)` at
/// `amplitude`.
pub fn sine(rate: u32, seconds: f64, channels: usize, hz: f32, amplitude: f32) -> Audio {
    let n = (rate as f64 * seconds).round() as usize;
    let data: Vec<f32> = (0..channels)
        .flat_map(|c| {
            (0..n).map(move |i| {
                amplitude
                    * (2.0 * std::f32::consts::PI * hz * (c + 1) as f32 * i as f32 / rate as f32)
                        .sin()
            })
        })
        .collect();
    Audio {
        waveform: Tensor::from_vec(data, (1, channels, n), &Device::Cpu).unwrap(),
        sampling_rate: rate,
    }
}

pub fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).abs())
        .sum::<f64>()
        / a.len() as f64
}

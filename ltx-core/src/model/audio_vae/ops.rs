//! Port of `ltx_core/model/audio_vae/ops.py`'s `AudioProcessor`: waveform → log-mel spectrogram as
//! torchaudio computes it (sinc resampling to the model rate, centred reflect-padded STFT with a
//! periodic Hann window, magnitude, slaney mel filterbank, `log(max(·, 1e-5))`).

use candle_core::{DType, Device, Tensor};

use crate::error::{bad_shape, Error, Result};

/// torchaudio's `resample` (`sinc_interp_hann`, 6 zero crossings, rolloff 0.99) of `[.., N]`
/// rows, in f32 like the reference for f32 waveforms.
pub fn resample(waveform: &Tensor, orig_freq: usize, new_freq: usize) -> Result<Tensor> {
    if orig_freq == 0 || new_freq == 0 {
        return Err(Error::InvalidInput("sample rates must be positive".into()));
    }
    if orig_freq == new_freq {
        return Ok(waveform.clone());
    }
    let gcd = {
        let (mut a, mut b) = (orig_freq, new_freq);
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    let (orig, new) = (orig_freq / gcd, new_freq / gcd);
    const LPW: f64 = 6.0;
    let base = orig.min(new) as f64 * 0.99;
    let width = (LPW * orig as f64 / base).ceil() as usize;
    let taps = 2 * width + orig;
    // kernel [new][taps], f32 arithmetic in the reference's order
    let pi = std::f32::consts::PI;
    let mut kernel = vec![0f32; new * taps];
    for j in 0..new {
        for (i, k) in kernel[j * taps..(j + 1) * taps].iter_mut().enumerate() {
            let idx = (i as f32 - width as f32) / orig as f32;
            let mut t = -(j as f32) / new as f32 + idx;
            t *= base as f32;
            t = t.clamp(-LPW as f32, LPW as f32);
            let w = (t * pi / LPW as f32 / 2.0).cos();
            let window = w * w;
            t *= pi;
            let sinc = if t == 0.0 { 1.0 } else { t.sin() / t };
            *k = sinc * (window * (base / orig as f64) as f32);
        }
    }
    let dims = waveform.dims().to_vec();
    let n = *dims
        .last()
        .ok_or_else(|| bad_shape("waveform", &dims, "[.., samples]"))?;
    let rows = waveform
        .to_dtype(DType::F32)?
        .reshape(((), n))?
        .to_device(&Device::Cpu)?
        .to_vec2::<f32>()?;
    let target = (new * n).div_ceil(orig);
    let mut out = Vec::with_capacity(rows.len() * target);
    for row in &rows {
        let padded_len = n + 2 * width + orig;
        let get = |p: usize| -> f32 {
            if p < width || p >= width + n {
                0.0
            } else {
                row[p - width]
            }
        };
        let frames = (padded_len - taps) / orig + 1;
        let mut res = Vec::with_capacity(frames * new);
        for f in 0..frames {
            for j in 0..new {
                let k = &kernel[j * taps..(j + 1) * taps];
                let s: f32 = k
                    .iter()
                    .enumerate()
                    .map(|(i, w)| w * get(f * orig + i))
                    .sum();
                res.push(s);
            }
        }
        res.truncate(target);
        out.extend(res);
    }
    let mut shape = dims;
    *shape.last_mut().expect("rank >= 1") = target;
    Ok(Tensor::from_vec(out, shape, &Device::Cpu)?
        .to_dtype(waveform.dtype())?
        .to_device(waveform.device())?)
}

fn hz_to_mel_slaney(f: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if f >= min_log_hz {
        min_log_mel + (f / min_log_hz).ln() / logstep
    } else {
        f / f_sp
    }
}

fn mel_to_hz_slaney(m: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if m >= min_log_mel {
        min_log_hz * (logstep * (m - min_log_mel)).exp()
    } else {
        f_sp * m
    }
}

/// torchaudio's `melscale_fbanks(n_freqs, 0, sr/2, n_mels, sr, norm="slaney", mel_scale="slaney")`:
/// `[n_freqs, n_mels]`.
pub fn melscale_fbanks(n_freqs: usize, sample_rate: usize, n_mels: usize) -> Vec<f32> {
    let f_max = sample_rate as f64 / 2.0;
    let all: Vec<f64> = (0..n_freqs)
        .map(|i| (sample_rate / 2) as f64 * i as f64 / (n_freqs - 1) as f64)
        .collect();
    let (m_min, m_max) = (hz_to_mel_slaney(0.0), hz_to_mel_slaney(f_max));
    let f_pts: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz_slaney(m_min + (m_max - m_min) * i as f64 / (n_mels + 1) as f64))
        .collect();
    let mut fb = vec![0f32; n_freqs * n_mels];
    for (k, &f) in all.iter().enumerate() {
        for m in 0..n_mels {
            let down = (f - f_pts[m]) / (f_pts[m + 1] - f_pts[m]);
            let up = (f_pts[m + 2] - f) / (f_pts[m + 2] - f_pts[m + 1]);
            let tri = down.min(up).max(0.0);
            let enorm = 2.0 / (f_pts[m + 2] - f_pts[m]);
            fb[k * n_mels + m] = (tri * enorm) as f32;
        }
    }
    fb
}

/// Waveform `[B, C, N]` at any rate -> log-mel `[B, C, frames, mel_bins]` at the model's rate.
pub struct AudioProcessor {
    pub target_sample_rate: usize,
    pub mel_bins: usize,
    pub hop_length: usize,
    pub n_fft: usize,
    /// `[n_fft, n_fft/2 + 1]` windowed DFT bases (cos, −sin), f64: quiet bins (e.g. above the
    /// Nyquist rate of upsampled audio) keep their precision before the log.
    dft_re: Tensor,
    dft_im: Tensor,
    /// `[n_fft/2 + 1, mel_bins]`.
    fbanks: Tensor,
}

impl AudioProcessor {
    pub fn new(
        target_sample_rate: usize,
        mel_bins: usize,
        hop_length: usize,
        n_fft: usize,
        device: &Device,
    ) -> Result<Self> {
        if n_fft < 2 || hop_length == 0 || mel_bins == 0 || target_sample_rate == 0 {
            return Err(Error::InvalidConfig(format!(
                "audio processor: n_fft {n_fft}, hop {hop_length}, mels {mel_bins}, rate {target_sample_rate}"
            )));
        }
        let bins = n_fft / 2 + 1;
        let (mut re, mut im) = (vec![0f64; n_fft * bins], vec![0f64; n_fft * bins]);
        for n in 0..n_fft {
            // periodic Hann window
            let w = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / n_fft as f64).cos();
            for k in 0..bins {
                let a = 2.0 * std::f64::consts::PI * ((k * n) % n_fft) as f64 / n_fft as f64;
                re[n * bins + k] = w * a.cos();
                im[n * bins + k] = -w * a.sin();
            }
        }
        Ok(Self {
            target_sample_rate,
            mel_bins,
            hop_length,
            n_fft,
            dft_re: Tensor::from_vec(re, (n_fft, bins), device)?,
            dft_im: Tensor::from_vec(im, (n_fft, bins), device)?,
            fbanks: Tensor::from_vec(
                melscale_fbanks(bins, target_sample_rate, mel_bins),
                (bins, mel_bins),
                device,
            )?,
        })
    }

    /// `waveform` `[B, C, N]` sampled at `sample_rate` -> `[B, C, 1 + N'/hop, mel_bins]`.
    pub fn waveform_to_mel(&self, waveform: &Tensor, sample_rate: usize) -> Result<Tensor> {
        let dims = waveform.dims();
        if dims.len() != 3 || dims[2] == 0 {
            return Err(bad_shape(
                "waveform",
                dims,
                "[batch, channels, samples] with samples > 0",
            ));
        }
        let wav = resample(waveform, sample_rate, self.target_sample_rate)?;
        let (b, c, n) = wav.dims3()?;
        let pad = self.n_fft / 2;
        if n <= pad {
            return Err(Error::InvalidInput(format!(
                "audio of {n} samples is too short for a {}-point STFT (reflect padding needs more than {pad})",
                self.n_fft
            )));
        }
        let rows = wav
            .to_dtype(DType::F32)?
            .reshape((b * c, n))?
            .to_device(&Device::Cpu)?
            .to_vec2::<f32>()?;
        let frames = 1 + n / self.hop_length;
        let mut data = Vec::with_capacity(b * c * frames * self.n_fft);
        for row in &rows {
            // reflect padding (no edge repeat)
            let at = |p: isize| -> f32 {
                let n = n as isize;
                let q = if p < 0 {
                    -p
                } else if p >= n {
                    2 * (n - 1) - p
                } else {
                    p
                };
                row[q as usize]
            };
            for f in 0..frames {
                let start = (f * self.hop_length) as isize - pad as isize;
                data.extend((0..self.n_fft as isize).map(|i| at(start + i)));
            }
        }
        let dev = self.dft_re.device();
        let x = Tensor::from_vec(data, (b * c * frames, self.n_fft), dev)?.to_dtype(DType::F64)?;
        let re = x.matmul(&self.dft_re)?;
        let im = x.matmul(&self.dft_im)?;
        let mag = (re.sqr()? + im.sqr()?)?.sqrt()?;
        let mel = mag
            .matmul(&self.fbanks.to_dtype(DType::F64)?)?
            .to_dtype(DType::F32)?;
        let logmel = mel.clamp(1e-5, f64::INFINITY)?.log()?;
        Ok(logmel
            .reshape((b, c, frames, self.mel_bins))?
            .to_dtype(waveform.dtype())?
            .to_device(waveform.device())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_bad_audio() -> Result<()> {
        let dev = Device::Cpu;
        let p = AudioProcessor::new(16000, 64, 160, 1024, &dev)?;
        let wav = Tensor::randn(0f32, 0.1, (1, 2, 4000), &dev)?;
        assert_eq!(p.waveform_to_mel(&wav, 16000)?.dims(), &[1, 2, 26, 64]);
        // 1 s at 24 kHz -> 1 s at 16 kHz
        let wav = Tensor::randn(0f32, 0.1, (1, 1, 24000), &dev)?;
        assert_eq!(resample(&wav, 24000, 16000)?.dims(), &[1, 1, 16000]);
        // zero-length and too-short audio, wrong rank, zero rate
        let empty = Tensor::zeros((1, 2, 0), DType::F32, &dev)?;
        assert!(matches!(
            p.waveform_to_mel(&empty, 16000),
            Err(Error::TensorShape { .. })
        ));
        let short = Tensor::zeros((1, 2, 100), DType::F32, &dev)?;
        assert!(matches!(
            p.waveform_to_mel(&short, 16000),
            Err(Error::InvalidInput(_))
        ));
        assert!(p
            .waveform_to_mel(&Tensor::zeros((2, 100), DType::F32, &dev)?, 16000)
            .is_err());
        assert!(resample(&wav, 0, 16000).is_err());
        Ok(())
    }
}

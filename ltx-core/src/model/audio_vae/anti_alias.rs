//! BigVGAN-v2 building blocks of `ltx_core/model/audio_vae/vocoder.py`: kaiser- and hann-windowed
//! sinc filters, the polyphase integer upsampler (`UpSample1d`), the strided low-pass
//! (`DownSample1d`), `Snake` / `SnakeBeta` and the anti-aliased activation (`Activation1d`:
//! 2x up, activation, 2x down).
//!
//! Every resampler filters each channel with one shared filter. Instead of a grouped (depthwise)
//! convolution, the generic path writes the filter as a few shifted, scaled views of the input
//! (polyphase form), which runs on any Candle device. On the CPU, `Activation1d` runs fused: one
//! pass per channel row does upsample, activation and downsample in cache.

use candle_core::{DType, Device, Result, Tensor, D};
use candle_nn::VarBuilder;
use rayon::prelude::*;

/// Modified Bessel function of the first kind, order 0 (power series; converges for all x).
fn bessel_i0(x: f64) -> f64 {
    let q = x * x / 4.0;
    let (mut term, mut sum, mut k) = (1.0f64, 1.0f64, 1.0f64);
    loop {
        term *= q / (k * k);
        sum += term;
        if term < sum * 1e-17 {
            return sum;
        }
        k += 1.0;
    }
}

/// `torch.kaiser_window(n, periodic=False, beta)`.
fn kaiser_window(n: usize, beta: f64) -> Vec<f64> {
    if n == 1 {
        return vec![1.0];
    }
    let half = (n - 1) as f64 / 2.0;
    let denom = bessel_i0(beta);
    (0..n)
        .map(|i| {
            let r = (i as f64 - half) / half;
            bessel_i0(beta * (1.0 - r * r).max(0.0).sqrt()) / denom
        })
        .collect()
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        (std::f64::consts::PI * x).sin() / (std::f64::consts::PI * x)
    }
}

/// `kaiser_sinc_filter1d(cutoff, half_width, kernel_size)`: a unit-gain low-pass of
/// `kernel_size` taps (computed in f64, rounded once to f32).
pub fn kaiser_sinc_filter1d(cutoff: f64, half_width: f64, kernel_size: usize) -> Vec<f32> {
    let even = kernel_size % 2 == 0;
    let half = (kernel_size / 2) as f64;
    let delta_f = 4.0 * half_width;
    let amplitude = 2.285 * (half - 1.0) * std::f64::consts::PI * delta_f + 7.95;
    let beta = if amplitude > 50.0 {
        0.1102 * (amplitude - 8.7)
    } else if amplitude >= 21.0 {
        0.5842 * (amplitude - 21.0).powf(0.4) + 0.07886 * (amplitude - 21.0)
    } else {
        0.0
    };
    if cutoff == 0.0 {
        return vec![0.0; kernel_size];
    }
    let window = kaiser_window(kernel_size, beta);
    let filt: Vec<f64> = (0..kernel_size)
        .map(|i| {
            let t = if even {
                i as f64 - half + 0.5
            } else {
                i as f64 - half
            };
            2.0 * cutoff * window[i] * sinc(2.0 * cutoff * t)
        })
        .collect();
    let sum: f64 = filt.iter().sum();
    filt.iter().map(|v| (v / sum) as f32).collect()
}

/// Geometry of an integer-ratio upsampler: replicate-pad by `pad` on both sides, transposed
/// convolution with stride `ratio`, times `ratio`, then crop `pad_left` / `pad_right`.
#[derive(Clone, Debug, PartialEq)]
pub struct UpSample1d {
    pub ratio: usize,
    pub filter: Vec<f32>,
    pub pad: usize,
    pub pad_left: usize,
    pub pad_right: usize,
}

impl UpSample1d {
    /// The BigVGAN kaiser-sinc upsampler (`window_type="kaiser"`); `filter` from the checkpoint
    /// when it holds one (the reference loads it), else computed.
    pub fn kaiser(ratio: usize, kernel_size: usize, filter: Option<Vec<f32>>) -> Self {
        let pad = kernel_size / ratio - 1;
        Self {
            ratio,
            filter: filter.unwrap_or_else(|| {
                kaiser_sinc_filter1d(0.5 / ratio as f64, 0.6 / ratio as f64, kernel_size)
            }),
            pad,
            pad_left: pad * ratio + (kernel_size - ratio) / 2,
            pad_right: pad * ratio + (kernel_size - ratio).div_ceil(2),
        }
    }

    /// The hann-windowed sinc upsampler equal to `torchaudio.functional.resample` by an integer
    /// ratio (`window_type="hann"`, rolloff 0.99, 6 zero crossings); never stored in checkpoints.
    pub fn hann(ratio: usize) -> Self {
        let rolloff = 0.99f64;
        let lowpass_width = 6.0f64;
        let width = (lowpass_width / rolloff).ceil() as usize;
        let kernel_size = 2 * width * ratio + 1;
        let filter = (0..kernel_size)
            .map(|i| {
                let t = (i as f64 / ratio as f64 - width as f64) * rolloff;
                let tc = t.clamp(-lowpass_width, lowpass_width);
                let w = (tc * std::f64::consts::PI / lowpass_width / 2.0)
                    .cos()
                    .powi(2);
                (sinc(t) * w * rolloff / ratio as f64) as f32
            })
            .collect();
        Self {
            ratio,
            filter,
            pad: width,
            pad_left: 2 * width * ratio,
            pad_right: kernel_size - ratio,
        }
    }

    /// For output phase `p`: the taps `(k, offset)` with `y[r·m + p] = Σ f[k] · xpad[m + offset]`.
    fn phase_taps(&self, p: usize) -> Vec<(usize, usize)> {
        let q0 = p + self.pad_left;
        (0..self.filter.len())
            .filter(|&k| k <= q0 && (q0 - k) % self.ratio == 0)
            .map(|k| (k, (q0 - k) / self.ratio))
            .collect()
    }

    /// Output length for `t` input samples (the geometry makes it `t · ratio`).
    pub fn out_len(&self, t: usize) -> usize {
        ((t + 2 * self.pad - 1) * self.ratio + self.filter.len()) - self.pad_left - self.pad_right
    }

    /// `[B, C, T]` -> `[B, C, T·ratio]` on any device.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let t = x.dim(D::Minus1)?;
        let out = self.out_len(t);
        if out != t * self.ratio {
            candle_core::bail!("upsampler geometry gives {out} samples for {t}, not {t}x ratio");
        }
        let xp = replicate_pad(x, self.pad, self.pad)?;
        let tp = t + 2 * self.pad;
        let mut phases = Vec::with_capacity(self.ratio);
        for p in 0..self.ratio {
            let mut acc: Option<Tensor> = None;
            for (k, off) in self.phase_taps(p) {
                if off + t > tp {
                    candle_core::bail!("upsampler tap {k} reads past the padded input");
                }
                let term = xp
                    .narrow(D::Minus1, off, t)?
                    .affine(self.filter[k] as f64, 0.0)?;
                acc = Some(match acc {
                    None => term,
                    Some(a) => (a + term)?,
                });
            }
            let acc = match acc {
                Some(a) => a.affine(self.ratio as f64, 0.0)?,
                None => x.zeros_like()?,
            };
            phases.push(acc);
        }
        let y = Tensor::stack(&phases, D::Minus1)?;
        let mut dims = x.dims().to_vec();
        *dims.last_mut().unwrap() = t * self.ratio;
        y.reshape(dims)
    }
}

/// `LowPassFilter1d` with replicate padding (`DownSample1d` uses it with stride = ratio).
#[derive(Clone, Debug, PartialEq)]
pub struct LowPass1d {
    pub filter: Vec<f32>,
    pub stride: usize,
    pub pad_left: usize,
    pub pad_right: usize,
}

impl LowPass1d {
    /// `DownSample1d(ratio, kernel_size)`: kaiser-sinc low-pass at `0.5 / ratio`, stride `ratio`.
    pub fn downsample(ratio: usize, kernel_size: usize, filter: Option<Vec<f32>>) -> Self {
        let even = kernel_size % 2 == 0;
        Self {
            filter: filter.unwrap_or_else(|| {
                kaiser_sinc_filter1d(0.5 / ratio as f64, 0.6 / ratio as f64, kernel_size)
            }),
            stride: ratio,
            pad_left: kernel_size / 2 - usize::from(even),
            pad_right: kernel_size / 2,
        }
    }

    pub fn out_len(&self, t: usize) -> usize {
        (t + self.pad_left + self.pad_right - self.filter.len()) / self.stride + 1
    }

    /// `[B, C, T]` -> `[B, C, out_len(T)]` on any device.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let t = x.dim(D::Minus1)?;
        let n = self.out_len(t);
        let s = self.stride;
        let xp = replicate_pad(x, self.pad_left, self.pad_right)?;
        let tp = t + self.pad_left + self.pad_right;
        let mut acc: Option<Tensor> = None;
        for (k, &f) in self.filter.iter().enumerate() {
            // xpad[k + s·m] for m in 0..n, as a strided view
            let len = (n * s).min(tp - k);
            let mut v = xp.narrow(D::Minus1, k, len)?;
            if len < n * s {
                v = v.pad_with_zeros(D::Minus1, 0, n * s - len)?;
            }
            let mut dims = v.dims().to_vec();
            *dims.last_mut().unwrap() = n;
            dims.push(s);
            let v = v
                .reshape(dims)?
                .narrow(D::Minus1, 0, 1)?
                .squeeze(D::Minus1)?;
            let term = v.affine(f as f64, 0.0)?;
            acc = Some(match acc {
                None => term,
                Some(a) => (a + term)?,
            });
        }
        match acc {
            Some(a) => Ok(a),
            None => candle_core::bail!("empty low-pass filter"),
        }
    }
}

/// Replicate padding on the last dimension.
pub fn replicate_pad(x: &Tensor, left: usize, right: usize) -> Result<Tensor> {
    let t = x.dim(D::Minus1)?;
    if t == 0 {
        candle_core::bail!("cannot replicate-pad an empty signal");
    }
    let mut parts = Vec::with_capacity(3);
    if left > 0 {
        parts.push(x.narrow(D::Minus1, 0, 1)?.repeat_last(left)?);
    }
    parts.push(x.clone());
    if right > 0 {
        parts.push(x.narrow(D::Minus1, t - 1, 1)?.repeat_last(right)?);
    }
    Tensor::cat(&parts, D::Minus1)
}

trait RepeatLast {
    fn repeat_last(&self, n: usize) -> Result<Tensor>;
}

impl RepeatLast for Tensor {
    fn repeat_last(&self, n: usize) -> Result<Tensor> {
        let mut dims = self.dims().to_vec();
        *dims.last_mut().unwrap() = n;
        self.broadcast_as(dims)
    }
}

/// `Snake` (`beta` = `alpha`) or `SnakeBeta`: `x + sin²(x·e^α) / (e^β + 1e-9)`, per channel,
/// parameters stored in log scale (`alpha_logscale=True`, the only form the reference builds).
#[derive(Clone, Debug)]
pub struct Snake {
    /// `e^α` per channel.
    pub alpha: Vec<f32>,
    /// `1 / (e^β + 1e-9)` per channel.
    pub inv_beta: Vec<f32>,
    alpha_t: Tensor,
    inv_beta_t: Tensor,
}

impl Snake {
    /// `beta = true` for `SnakeBeta` (keys `alpha`, `beta`), false for `Snake` (key `alpha`).
    pub fn new(channels: usize, beta: bool, vb: VarBuilder) -> Result<Self> {
        let alpha_log = vb.get(channels, "alpha")?.to_dtype(DType::F32)?;
        let beta_log = if beta {
            vb.get(channels, "beta")?.to_dtype(DType::F32)?
        } else {
            alpha_log.clone()
        };
        let alpha_t = alpha_log.exp()?;
        let inv_beta_t = (beta_log.exp()? + 1e-9)?.recip()?;
        let dtype = vb.dtype();
        Ok(Self {
            alpha: alpha_t.to_vec1()?,
            inv_beta: inv_beta_t.to_vec1()?,
            alpha_t: alpha_t.to_dtype(dtype)?.reshape((1, channels, 1))?,
            inv_beta_t: inv_beta_t.to_dtype(dtype)?.reshape((1, channels, 1))?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let s = x.broadcast_mul(&self.alpha_t)?.sin()?.sqr()?;
        x + s.broadcast_mul(&self.inv_beta_t)?
    }
}

/// `Activation1d(act)`: kaiser 2x upsample (12 taps), activation, kaiser 2x downsample (12 taps).
#[derive(Clone, Debug)]
pub struct Activation1d {
    pub up: UpSample1d,
    pub down: LowPass1d,
    pub act: Snake,
}

/// A filter buffer from the checkpoint when present (the reference loads them), else `None`.
fn stored_filter(vb: &VarBuilder, name: &str, taps: usize) -> Result<Option<Vec<f32>>> {
    if vb.contains_tensor(name) {
        let f = vb.get((1, 1, taps), name)?.to_dtype(DType::F32)?;
        Ok(Some(f.flatten_all()?.to_vec1()?))
    } else {
        Ok(None)
    }
}

impl Activation1d {
    pub fn new(channels: usize, snake_beta: bool, vb: VarBuilder) -> Result<Self> {
        const RATIO: usize = 2;
        const TAPS: usize = 12;
        let up_f = stored_filter(&vb, "upsample.filter", TAPS)?;
        let down_f = stored_filter(&vb, "downsample.lowpass.filter", TAPS)?;
        Ok(Self {
            up: UpSample1d::kaiser(RATIO, TAPS, up_f),
            down: LowPass1d::downsample(RATIO, TAPS, down_f),
            act: Snake::new(channels, snake_beta, vb.pp("act"))?,
        })
    }

    /// `[B, C, T]` -> `[B, C, T]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if matches!(x.device(), Device::Cpu) {
            self.forward_cpu(x)
        } else {
            self.forward_generic(x)
        }
    }

    /// Tensor-op form (any device).
    pub fn forward_generic(&self, x: &Tensor) -> Result<Tensor> {
        self.down.forward(&self.act.forward(&self.up.forward(x)?)?)
    }

    /// Fused CPU form: per `(b, c)` row, upsample + snake + low-pass in one pass (f32 math).
    pub fn forward_cpu(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, t) = x.dims3()?;
        if c != self.act.alpha.len() {
            candle_core::bail!(
                "Activation1d has {} channels, input has {c}",
                self.act.alpha.len()
            );
        }
        if t == 0 {
            candle_core::bail!("Activation1d on an empty signal");
        }
        let dtype = x.dtype();
        let data: Vec<f32> = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let up = &self.up;
        let down = &self.down;
        let r = up.ratio;
        let taps: Vec<Vec<(usize, usize)>> = (0..r).map(|p| up.phase_taps(p)).collect();
        let tu = t * r;
        let n_out = down.out_len(tu);
        let mut out = vec![0f32; b * c * n_out];
        out.par_chunks_mut(n_out)
            .zip(data.par_chunks(t))
            .enumerate()
            .for_each(|(row, (dst, src))| {
                let ch = row % c;
                let (a, ib) = (self.act.alpha[ch], self.act.inv_beta[ch]);
                // replicate-padded input
                let mut xp = Vec::with_capacity(t + 2 * up.pad);
                xp.extend(std::iter::repeat_n(src[0], up.pad));
                xp.extend_from_slice(src);
                xp.extend(std::iter::repeat_n(src[t - 1], up.pad));
                // Upsample phase by phase: each tap is one contiguous multiply-add over the row
                // (the taps are summed in the same order as a direct loop, so results match it).
                let (pl, pr) = (down.pad_left, down.pad_right);
                let mut s = vec![0f32; pl + tu + pr];
                let mut phase = vec![0f32; t];
                for (p, tp) in taps.iter().enumerate() {
                    phase.fill(0.0);
                    for &(k, off) in tp {
                        let f = up.filter[k];
                        for (o, x) in phase.iter_mut().zip(&xp[off..off + t]) {
                            *o += f * x;
                        }
                    }
                    for (m, &acc) in phase.iter().enumerate() {
                        let u = acc * r as f32;
                        let sn = (u * a).sin();
                        s[pl + m * r + p] = u + ib * (sn * sn);
                    }
                }
                let (first, last) = (s[pl], s[pl + tu - 1]);
                s[..pl].fill(first);
                s[pl + tu..].fill(last);
                // Strided low-pass: split the padded signal into `stride` phases so every tap is
                // again a contiguous multiply-add.
                let st = down.stride;
                let nph = s.len().div_ceil(st);
                let mut ph = vec![0f32; st * nph];
                for (i, &v) in s.iter().enumerate() {
                    ph[(i % st) * nph + i / st] = v;
                }
                for (k, &f) in down.filter.iter().enumerate() {
                    let base = (k % st) * nph + k / st;
                    for (d, x) in dst.iter_mut().zip(&ph[base..base + n_out]) {
                        *d += f * x;
                    }
                }
            });
        Tensor::from_vec(out, (b, c, n_out), x.device())?.to_dtype(dtype)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_have_unit_gain_and_symmetry() {
        let f = kaiser_sinc_filter1d(0.25, 0.3, 12);
        let sum: f32 = f.iter().sum();
        assert!((sum - 1.0).abs() < 1e-6);
        for i in 0..6 {
            assert!((f[i] - f[11 - i]).abs() < 1e-7);
        }
        let h = UpSample1d::hann(3);
        assert_eq!(h.filter.len(), 43);
        assert_eq!(h.out_len(10), 30);
        assert_eq!(UpSample1d::kaiser(2, 12, None).out_len(7), 14);
        assert_eq!(LowPass1d::downsample(2, 12, None).out_len(14), 7);
    }

    #[test]
    fn fused_cpu_path_matches_tensor_ops() -> Result<()> {
        let dev = Device::Cpu;
        let c = 3;
        let alpha = Tensor::new(&[0.1f32, -0.3, 0.5], &dev)?;
        let beta = Tensor::new(&[0.2f32, 0.0, -0.4], &dev)?;
        let mut ts = std::collections::HashMap::new();
        ts.insert("act.alpha".to_string(), alpha);
        ts.insert("act.beta".to_string(), beta);
        let vb = VarBuilder::from_tensors(ts, DType::F32, &dev);
        let act = Activation1d::new(c, true, vb)?;
        for t in [1usize, 2, 9, 40] {
            let x = Tensor::randn(0f32, 1.0, (2, c, t), &dev)?;
            let a = act.forward_cpu(&x)?;
            let b = act.forward_generic(&x)?;
            assert_eq!(a.dims(), &[2, c, t]);
            let d = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(d < 1e-5, "t={t}: {d}");
        }
        Ok(())
    }

    #[test]
    fn upsampler_passes_a_constant() -> Result<()> {
        // a unit-gain low-pass interpolator keeps a constant signal (replicate padding, no edges)
        let x = Tensor::full(0.5f32, (1, 1, 30), &Device::Cpu)?;
        for up in [UpSample1d::kaiser(2, 12, None), UpSample1d::hann(3)] {
            let y: Vec<f32> = up.forward(&x)?.flatten_all()?.to_vec1()?;
            assert_eq!(y.len(), 30 * up.ratio);
            for v in &y[up.ratio * 8..y.len() - up.ratio * 8] {
                assert!((v - 0.5).abs() < 2e-2, "{v}");
            }
        }
        Ok(())
    }
}

//! Rank-4 building blocks shared by the VAE and upsampler lowerings.
//!
//! Activations of a `[1, C, F, H, W]` video are kept **time-major**, `[F, C, H, W]`: frames
//! are the batch of every 2-D convolution, channels stay on axis 1 (where Core ML and the ANE
//! want them), and temporal padding, striding and depth-to-space become slices, concats and
//! reshapes over axis 0. No value in the graph has rank above 4.

use candle_core::Tensor;
use candle_nn::VarBuilder;
use ltx_core::kernels::conv3d::PadMode;

use crate::error::{CoreMlError, Result};
use crate::mil::{Graph, MilDType, Var};
use crate::ConvForm;

/// Smallest normal fp16 value: the lower clamp of the fp16-safe normalisation's scale.
const FP16_MIN_NORMAL: f64 = 6.104e-5;

/// How a 3-D convolution pads time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimePad {
    /// Repeat the edge frames (`CausalConv3d`): `(front, back)` copies.
    Replicate(usize, usize),
    /// Zero frames (`nn.Conv3d(padding=1)` in the upsampler).
    Zeros(usize, usize),
}

/// One lowering session: the graph, the weights and the chosen op forms.
pub struct Ctx<'a> {
    pub g: &'a mut Graph,
    pub conv_form: ConvForm,
}

impl Ctx<'_> {
    pub fn fp16(&self) -> bool {
        self.g.compute == MilDType::F16
    }

    /// A weight read through the strict loader (typed error when missing or misshaped).
    pub fn get(&self, vb: &VarBuilder, shape: &[usize], key: &str) -> Result<Tensor> {
        Ok(vb.get(shape, key)?)
    }

    /// `[1, C, 1, 1]` constant from a `[C]` tensor, for per-channel affine ops.
    pub fn channel_const(&mut self, t: &Tensor) -> Result<Var> {
        let c = t.elem_count();
        let t = t.reshape((1, c, 1, 1))?;
        self.g.weight(&t)
    }

    /// Pads time (axis 0) of `[F, C, H, W]`.
    pub fn pad_time(&mut self, x: &Var, pad: TimePad) -> Result<Var> {
        match pad {
            TimePad::Zeros(a, b) => self.g.pad(x, &[(a, b), (0, 0), (0, 0), (0, 0)], "constant"),
            TimePad::Replicate(a, b) => {
                if a == 0 && b == 0 {
                    return Ok(x.clone());
                }
                let f = x.shape[0];
                let mut parts = Vec::new();
                if a > 0 {
                    let first = self.g.slice(x, 0, 0, 1, 1)?;
                    parts.extend(std::iter::repeat_n(first, a));
                }
                parts.push(x.clone());
                if b > 0 {
                    let last = self.g.slice(x, 0, f - 1, f, 1)?;
                    parts.extend(std::iter::repeat_n(last, b));
                }
                self.g.concat(&parts, 0)
            }
        }
    }

    /// PyTorch `nn.Conv3d` over time-major `[F, Cin, H, W]` with `weight` `[Cout, Cin, kt, kh,
    /// kw]`: time padding, then either one conv2d per temporal tap summed, or the taps folded
    /// into the input channels of one conv2d (see [`ConvForm`]).
    #[allow(clippy::too_many_arguments)]
    pub fn conv3d(
        &mut self,
        x: &Var,
        weight: &Tensor,
        bias: &Tensor,
        time_pad: TimePad,
        time_stride: usize,
        spatial_stride: usize,
        spatial_pad: usize,
        pad_mode: PadMode,
    ) -> Result<Var> {
        let (cout, cin, kt, kh, kw) = weight.dims5()?;
        let x = self.pad_time(x, time_pad)?;
        let fp = x.shape[0];
        if fp < kt {
            return Err(CoreMlError::InvalidShape(format!(
                "{fp} frames after padding are fewer than the temporal kernel {kt}"
            )));
        }
        let fout = (fp - kt) / time_stride + 1;
        let (x, pad) = match pad_mode {
            PadMode::Zeros => (x, [spatial_pad; 4]),
            PadMode::Reflect | PadMode::Replicate => {
                let mode = if pad_mode == PadMode::Reflect {
                    "reflect"
                } else {
                    "replicate"
                };
                let p = (spatial_pad, spatial_pad);
                (self.g.pad(&x, &[p, p], mode)?, [0; 4])
            }
        };
        let b = self.g.weight(bias)?;
        let span = (fout - 1) * time_stride + 1;
        let taps: Vec<Var> = (0..kt)
            .map(|k| self.g.slice(&x, 0, k, k + span, time_stride))
            .collect::<Result<_>>()?;
        if kt == 1 || self.conv_form == ConvForm::ChannelFold {
            // weight[o, k·Cin + c] = W[o, c, k]: matches concat of the taps on channels.
            let w = weight
                .permute((0, 2, 1, 3, 4))?
                .reshape((cout, kt * cin, kh, kw))?;
            let w = self.g.weight(&w)?;
            let xin = self.g.concat(&taps, 1)?;
            return self.g.conv(&xin, &w, Some(&b), spatial_stride, pad);
        }
        let mut acc: Option<Var> = None;
        for (k, tap) in taps.iter().enumerate() {
            let wk = weight.narrow(2, k, 1)?.squeeze(2)?;
            let wk = self.g.weight(&wk)?;
            let y = self
                .g
                .conv(tap, &wk, (k == 0).then_some(&b), spatial_stride, pad)?;
            acc = Some(match acc {
                None => y,
                Some(a) => self.g.add(&a, &y)?,
            });
        }
        acc.ok_or_else(|| CoreMlError::Graph("conv3d without taps".into()))
    }

    /// `d · rsqrt(mean(d², axes) + eps)` with the mean broadcast back. In fp16 the squares are
    /// taken of `d / max(|d|)` (clamped below), so they cannot overflow; the result is the same
    /// up to rounding because the normalisation is scale-invariant once `eps` is rescaled too.
    pub fn rms_normalize(&mut self, d: &Var, axes: &[usize], eps: f64) -> Result<Var> {
        if !self.fp16() {
            let sq = self.g.mul(d, d)?;
            let ms = self.g.reduce("reduce_mean", &sq, axes)?;
            let r = self.g.rsqrt(&ms, eps as f32)?;
            return self.g.mul(d, &r);
        }
        let a = self.g.abs(d);
        let m = self.g.reduce("reduce_max", &a, axes)?;
        // Clamping the scale at sqrt(eps) keeps eps/m² ≤ 1 and, whenever the clamp is active,
        // lets the rescaled eps (≥ 1) dominate any fp16 underflow in the squares.
        let floor = self.g.scalar(eps.sqrt().max(FP16_MIN_NORMAL) as f32)?;
        let m = self.g.maximum(&m, &floor)?;
        let one = self.g.scalar(1.0)?;
        let inv = self.g.real_div(&one, &m)?;
        let u = self.g.mul(d, &inv)?;
        let sq = self.g.mul(&u, &u)?;
        let ms = self.g.reduce("reduce_mean", &sq, axes)?;
        // eps / m² computed as (sqrt(eps) · inv)² so that it stays representable in fp16.
        let se = self.g.scalar(eps.sqrt() as f32)?;
        let e = self.g.mul(&inv, &se)?;
        let e2 = self.g.mul(&e, &e)?;
        let den = self.g.add(&ms, &e2)?;
        let r = self.g.rsqrt(&den, 0.0)?;
        self.g.mul(&u, &r)
    }

    /// PixelNorm over channels of `[F, C, H, W]`, then SiLU.
    pub fn pixel_norm_silu(&mut self, x: &Var, eps: f64) -> Result<Var> {
        let y = self.rms_normalize(x, &[1], eps)?;
        Ok(self.g.silu(&y))
    }

    /// `GroupNorm(groups)` of `[F, C, H, W]` with affine `weight`/`bias` `[C]`. Statistics span
    /// every frame (a 3-D GroupNorm over `[1, C, F, H, W]`) unless `per_frame`.
    pub fn group_norm(
        &mut self,
        x: &Var,
        groups: usize,
        eps: f64,
        weight: &Tensor,
        bias: &Tensor,
        per_frame: bool,
    ) -> Result<Var> {
        let (f, c, h, w) = dims4(x)?;
        let xr = self.g.reshape(x, &[f, groups, c / groups * h * w])?;
        let axes: &[usize] = if per_frame { &[2] } else { &[0, 2] };
        let mean = self.g.reduce("reduce_mean", &xr, axes)?;
        let d = self.g.sub(&xr, &mean)?;
        let y = self.rms_normalize(&d, axes, eps)?;
        let y = self.g.reshape(&y, &[f, c, h, w])?;
        let wv = self.channel_const(weight)?;
        let bv = self.channel_const(bias)?;
        let y = self.g.mul(&y, &wv)?;
        self.g.add(&y, &bv)
    }

    /// Spatial depth-to-space of `[N, Q·ph·pw, H, W]` with channel order `(q, i, j)` (height
    /// offset `i` before width offset `j`, PyTorch `pixel_shuffle`) → `[N, Q, H·ph, W·pw]`.
    pub fn d2s_spatial(&mut self, x: &Var, ph: usize, pw: usize) -> Result<Var> {
        let (n, ch, h, w) = dims4(x)?;
        if ph * pw == 1 {
            return Ok(x.clone());
        }
        let q = ch / (ph * pw);
        let t = self.g.reshape(x, &[n * q * ph, pw, h, w])?;
        let t = self.g.transpose(&t, &[0, 2, 3, 1])?; // [n q ph, h, w, pw]
        let t = self.g.reshape(&t, &[n * q, ph, h, w * pw])?;
        let t = self.g.transpose(&t, &[0, 2, 1, 3])?; // [n q, h, ph, w pw]
        self.g.reshape(&t, &[n, q, h * ph, w * pw])
    }

    /// Inverse of [`Self::d2s_spatial`]: `[N, Q, H·ph, W·pw]` → `[N, Q·ph·pw, H, W]`.
    pub fn s2d_spatial(&mut self, x: &Var, ph: usize, pw: usize) -> Result<Var> {
        let (n, q, hh, ww) = dims4(x)?;
        if ph * pw == 1 {
            return Ok(x.clone());
        }
        let (h, w) = (hh / ph, ww / pw);
        let t = self.g.reshape(x, &[n * q, h, ph, ww])?;
        let t = self.g.transpose(&t, &[0, 2, 1, 3])?; // [n q, ph, h, w pw]
        let t = self.g.reshape(&t, &[n * q * ph, h, w, pw])?;
        let t = self.g.transpose(&t, &[0, 3, 1, 2])?; // [n q ph, pw, h, w]
        self.g.reshape(&t, &[n, q * ph * pw, h, w])
    }

    /// Temporal depth-to-space: `[F, C·pt, H, W]` (channel order `(c, t)`) → `[F·pt, C, H, W]`.
    pub fn d2s_time(&mut self, x: &Var, pt: usize) -> Result<Var> {
        let (f, ch, h, w) = dims4(x)?;
        if pt == 1 {
            return Ok(x.clone());
        }
        let c = ch / pt;
        let t = self.g.reshape(x, &[f, c, pt, h * w])?;
        let t = self.g.transpose(&t, &[0, 2, 1, 3])?;
        self.g.reshape(&t, &[f * pt, c, h, w])
    }

    /// Inverse of [`Self::d2s_time`]: `[F·pt, C, H, W]` → `[F, C·pt, H, W]`.
    pub fn s2d_time(&mut self, x: &Var, pt: usize) -> Result<Var> {
        let (ff, c, h, w) = dims4(x)?;
        if pt == 1 {
            return Ok(x.clone());
        }
        let t = self.g.reshape(x, &[ff / pt, pt, c, h * w])?;
        let t = self.g.transpose(&t, &[0, 2, 1, 3])?;
        self.g.reshape(&t, &[ff / pt, c * pt, h, w])
    }

    /// `b (c p1 p2 p3) d h w -> b c (d p1) (h p2) (w p3)` in time-major form.
    pub fn depth_to_space(&mut self, x: &Var, s: (usize, usize, usize)) -> Result<Var> {
        let y = self.d2s_spatial(x, s.1, s.2)?;
        self.d2s_time(&y, s.0)
    }

    /// `b c (d p1) (h p2) (w p3) -> b (c p1 p2 p3) d h w` in time-major form.
    pub fn space_to_depth(&mut self, x: &Var, s: (usize, usize, usize)) -> Result<Var> {
        let y = self.s2d_time(x, s.0)?;
        self.s2d_spatial(&y, s.1, s.2)
    }

    /// Drops the first frame of `[F, C, H, W]`.
    pub fn drop_first_frame(&mut self, x: &Var) -> Result<Var> {
        let f = x.shape[0];
        self.g.slice(x, 0, 1, f, 1)
    }
}

pub fn dims4(x: &Var) -> Result<(usize, usize, usize, usize)> {
    match x.shape.as_slice() {
        &[a, b, c, d] => Ok((a, b, c, d)),
        s => Err(CoreMlError::Graph(format!(
            "expected a rank-4 value, got {s:?}"
        ))),
    }
}

//! The generic path (Candle ops, any device): fold time into the batch, pad explicitly, one
//! `Tensor::conv2d` with the tap-stacked kernel per chunk, then the shifted temporal sum.

use candle_core::{bail, DType, Device, Result, Tensor};

use super::plan::{chunk_budget, plan_chunks};
use super::{count_conv2d, Conv3dSpec, Conv3dWeights, Geom, PadMode};

impl Conv3dWeights {
    /// The generic path on an input without time padding (`g.fsrc == g.fp`).
    pub(super) fn forward_generic(&self, x: &Tensor, g: &Geom, spec: Conv3dSpec) -> Result<Tensor> {
        let dtype = x.dtype();
        let work = match (x.device().is_cpu(), dtype) {
            (true, DType::F64) => DType::F64,
            (true, _) => DType::F32, // Candle's CPU conv2d has no bf16 kernel
            (false, dt) => dt,
        };
        let esz = work.size_in_bytes();
        let (s, kt, kh, kw, ts) = (spec.spatial_stride, g.kt, g.kh, g.kw, g.ts);
        let hp = g.h + 2 * g.pad;
        let bytes = |fc: usize, rc: usize| {
            let nin = (fc - 1) * ts + kt;
            let hin = ((rc - 1) * s + kh).min(hp);
            let per_frame = g.cin * hin * g.wp + (kt * g.cout + g.cin * kh * kw) * rc * g.wo;
            g.b * nin * per_frame * esz
        };
        let (fc, rc) = plan_chunks(g.fo, g.ho, chunk_budget(), bytes);
        let banded = rc < g.ho;
        let kernel = match (&self.kernel, &self.cpu) {
            (Some(k), _) => k.to_dtype(work)?,
            // CPU: rebuild the stacked kernel from the packed weights (rare fallback path).
            (None, Some(pack)) => {
                let dims = (g.cout, g.cin, kt, kh, kw);
                Tensor::from_vec(
                    pack.stacked(dims),
                    (kt * g.cout, g.cin, kh, kw),
                    &Device::Cpu,
                )?
                .to_dtype(work)?
            }
            (None, None) => bail!("conv3d: no weights prepared for this device"),
        };
        let mut pieces = Vec::with_capacity(g.fo.div_ceil(fc));
        for f0 in (0..g.fo).step_by(fc) {
            let fcn = fc.min(g.fo - f0);
            let nin = (fcn - 1) * ts + kt;
            // [B, Cin, nin, H, W] -> [B*nin, Cin, H, W]
            let xc = x
                .narrow(2, f0 * ts, nin)?
                .to_dtype(work)?
                .permute((0, 2, 1, 3, 4))?
                .contiguous()?
                .reshape((g.b * nin, g.cin, g.h, g.w))?;
            let explicit = g.pad > 0 && (spec.pad_mode != PadMode::Zeros || banded);
            let (xc, conv_pad) = if explicit {
                (pad_2d(&xc, g.pad, spec.pad_mode)?, 0)
            } else {
                (xc, g.pad)
            };
            let mut bands = Vec::with_capacity(g.ho.div_ceil(rc));
            for r0 in (0..g.ho).step_by(rc) {
                let rcn = rc.min(g.ho - r0);
                let xb = if banded {
                    xc.narrow(2, r0 * s, (rcn - 1) * s + kh)?
                } else {
                    xc.clone()
                };
                count_conv2d();
                let y = xb.conv2d(&kernel, conv_pad, s, 1, 1)?; // [B*nin, kt*Cout, rcn, Wo]
                bands.push(self.temporal_sum(&y, g.b, nin, fcn, ts)?);
            }
            pieces.push(if bands.len() == 1 {
                bands.pop().unwrap()
            } else {
                Tensor::cat(&bands, 3)?
            });
        }
        // [B, F, Cout, Ho, Wo] -> [B, Cout, F, Ho, Wo]
        let y = if pieces.len() == 1 {
            pieces.pop().unwrap()
        } else {
            Tensor::cat(&pieces, 1)?
        };
        let mut y = y.permute((0, 2, 1, 3, 4))?;
        if let Some(bias) = &self.bias {
            y = y.broadcast_add(&bias.to_dtype(work)?.reshape((1, g.cout, 1, 1, 1))?)?;
        }
        y.contiguous()?.to_dtype(dtype)
    }

    /// `y`: [B*nin, kt*Cout, H', W'] (tap-major channels) -> Σ_k y[f*ts + k][tap k]: [B, fc, Cout, H', W'].
    fn temporal_sum(
        &self,
        y: &Tensor,
        b: usize,
        nin: usize,
        fc: usize,
        ts: usize,
    ) -> Result<Tensor> {
        let (_, _, hh, ww) = y.dims4()?;
        let y = y.reshape((b, nin, self.kt, self.cout, hh, ww))?;
        let mut acc: Option<Tensor> = None;
        for k in 0..self.kt {
            let frames = if ts == 1 {
                y.narrow(1, k, fc)?
            } else {
                let idx: Vec<u32> = (0..fc).map(|f| (f * ts + k) as u32).collect();
                let idx = Tensor::new(idx.as_slice(), y.device())?;
                y.index_select(&idx, 1)?
            };
            let part = frames.narrow(2, k, 1)?.squeeze(2)?;
            acc = Some(match acc {
                None => part,
                Some(a) => (a + part)?,
            });
        }
        Ok(acc.expect("kt >= 1"))
    }
}

/// Reflect / replicate / zero padding of the last two dims of `[N, C, H, W]` (Candle ops).
fn pad_2d(x: &Tensor, pad: usize, mode: PadMode) -> Result<Tensor> {
    let mut x = x.clone();
    for dim in [2usize, 3] {
        let len = x.dim(dim)?;
        x = match mode {
            PadMode::Zeros => x.pad_with_zeros(dim, pad, pad)?,
            PadMode::Replicate => x.pad_with_same(dim, pad, pad)?,
            PadMode::Reflect => {
                if pad >= len {
                    bail!("reflect padding {pad} needs a dimension larger than {len}")
                }
                // left: x[pad], ..., x[1]; right: x[len-2], ..., x[len-1-pad]
                let left: Vec<u32> = (1..=pad).rev().map(|i| i as u32).collect();
                let right: Vec<u32> = (0..pad).map(|i| (len - 2 - i) as u32).collect();
                let l = x.index_select(&Tensor::new(left.as_slice(), x.device())?, dim)?;
                let r = x.index_select(&Tensor::new(right.as_slice(), x.device())?, dim)?;
                Tensor::cat(&[&l, &x, &r], dim)?
            }
        };
    }
    Ok(x)
}

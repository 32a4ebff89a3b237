//! 3-D convolution on top of Candle's conv2d (placeholder generic path; see kernels docs).

use std::cell::Cell;

use candle_core::{bail, DType, Result, Tensor, D};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PadMode {
    Zeros,
    Reflect,
    Replicate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv3dSpec {
    pub time_stride: usize,
    pub spatial_stride: usize,
    pub spatial_pad: usize,
    pub pad_mode: PadMode,
}

thread_local! {
    static CONV2D_CALLS: Cell<usize> = const { Cell::new(0) };
}

/// Number of 2-D convolution calls issued by this thread so far.
pub fn conv2d_call_count() -> usize {
    CONV2D_CALLS.with(|c| c.get())
}

pub struct Conv3dWeights {
    stacked: Tensor,
    bias: Option<Tensor>,
    cout: usize,
    cin: usize,
    k: (usize, usize, usize),
}

impl Conv3dWeights {
    pub fn new(weight: &Tensor, bias: Option<&Tensor>) -> Result<Self> {
        let (cout, cin, kt, kh, kw) = weight.dims5()?;
        let stacked = weight
            .permute((2, 0, 1, 3, 4))?
            .reshape((kt * cout, cin, kh, kw))?
            .contiguous()?;
        Ok(Self {
            stacked,
            bias: bias.cloned(),
            cout,
            cin,
            k: (kt, kh, kw),
        })
    }
    pub fn out_channels(&self) -> usize {
        self.cout
    }
    pub fn in_channels(&self) -> usize {
        self.cin
    }
    pub fn kernel(&self) -> (usize, usize, usize) {
        self.k
    }

    pub fn forward(&self, x: &Tensor, spec: Conv3dSpec) -> Result<Tensor> {
        let (b, cin, fp, h, w) = x.dims5()?;
        let (kt, _, _) = self.k;
        if cin != self.cin {
            bail!(
                "conv3d: input has {cin} channels, weight expects {}",
                self.cin
            )
        }
        if fp < kt {
            bail!("conv3d: {fp} frames is fewer than the temporal kernel {kt}")
        }
        let dtype = x.dtype();
        let cpu = x.device().is_cpu();
        let work = if cpu && dtype != DType::F32 {
            DType::F32
        } else {
            dtype
        };
        let mut xf = x
            .to_dtype(work)?
            .permute((0, 2, 1, 3, 4))?
            .reshape((b * fp, cin, h, w))?;
        let mut pad = spec.spatial_pad;
        if pad > 0 && spec.pad_mode != PadMode::Zeros {
            xf = pad_2d(&xf, pad, spec.pad_mode)?;
            pad = 0;
        }
        let k = self.stacked.to_dtype(work)?;
        CONV2D_CALLS.with(|c| c.set(c.get() + 1));
        let y = xf.conv2d(&k, pad, spec.spatial_stride, 1, 1)?;
        let (_, _, ho, wo) = y.dims4()?;
        let y = y.reshape((b, fp, kt, self.cout, ho, wo))?;
        let fo = (fp - kt) / spec.time_stride + 1;
        let mut acc: Option<Tensor> = None;
        for tap in 0..kt {
            let mut part = y.narrow(1, tap, (fo - 1) * spec.time_stride + 1)?;
            if spec.time_stride > 1 {
                let idx: Vec<u32> = (0..fo).map(|i| (i * spec.time_stride) as u32).collect();
                let idx = Tensor::new(idx.as_slice(), x.device())?;
                part = part.index_select(&idx, 1)?;
            }
            let part = part.narrow(2, tap, 1)?.squeeze(2)?;
            acc = Some(match acc {
                None => part,
                Some(a) => (a + part)?,
            });
        }
        let mut out = acc.expect("kt >= 1").permute((0, 2, 1, 3, 4))?;
        if let Some(bias) = &self.bias {
            out = out.broadcast_add(&bias.to_dtype(work)?.reshape((1, self.cout, 1, 1, 1))?)?;
        }
        out.contiguous()?.to_dtype(dtype)
    }
}

/// Reflect / replicate padding of the last two dims of `[N, C, H, W]`.
fn pad_2d(x: &Tensor, pad: usize, mode: PadMode) -> Result<Tensor> {
    let mut x = x.clone();
    for dim in [D::Minus2, D::Minus1] {
        let len = x.dim(dim)?;
        x = match mode {
            PadMode::Replicate => x.pad_with_same(dim, pad, pad)?,
            PadMode::Reflect => {
                if pad >= len {
                    bail!("reflect padding {pad} needs a dimension larger than {len}")
                }
                let mut parts = Vec::with_capacity(2 * pad + 1);
                for i in (1..=pad).rev() {
                    parts.push(x.narrow(dim, i, 1)?);
                }
                parts.push(x.clone());
                for i in 0..pad {
                    parts.push(x.narrow(dim, len - 2 - i, 1)?);
                }
                Tensor::cat(&parts, dim)?
            }
            PadMode::Zeros => x.pad_with_zeros(dim, pad, pad)?,
        };
    }
    Ok(x)
}

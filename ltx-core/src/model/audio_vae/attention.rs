//! Port of `ltx_core/model/audio_vae/attention.py`: single-head attention over all positions of a
//! `[B, C, H, W]` feature map.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Conv2d, VarBuilder};

use super::resnet::Norm;

pub struct AttnBlock {
    norm: Norm,
    q: Conv2d,
    k: Conv2d,
    v: Conv2d,
    proj_out: Conv2d,
}

impl AttnBlock {
    pub fn new(channels: usize, norm: Norm, vb: VarBuilder) -> Result<Self> {
        let c = |n: &str| candle_nn::conv2d(channels, channels, 1, Default::default(), vb.pp(n));
        Ok(Self {
            norm,
            q: c("q")?,
            k: c("k")?,
            v: c("v")?,
            proj_out: c("proj_out")?,
        })
    }
}

impl Module for AttnBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.norm.forward(x)?;
        let (b, c, hh, ww) = h.dims4()?;
        let flat = |t: Tensor| t.reshape((b, c, hh * ww));
        let q = flat(self.q.forward(&h)?)?.transpose(1, 2)?.contiguous()?; // b, hw, c
        let k = flat(self.k.forward(&h)?)?.contiguous()?; // b, c, hw
        let v = flat(self.v.forward(&h)?)?.contiguous()?;
        let w = (q.matmul(&k)? * (c as f64).powf(-0.5))?;
        let w = candle_nn::ops::softmax_last_dim(&w)?; // b, hw(q), hw(k)
        let out = v
            .matmul(&w.transpose(1, 2)?.contiguous()?)?
            .reshape((b, c, hh, ww))?;
        x + self.proj_out.forward(&out)?
    }
}

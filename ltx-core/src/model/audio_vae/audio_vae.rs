//! Port of `ltx_core/model/audio_vae/audio_vae.py` (encoder and decoder; the vocoder comes later).

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::attention::AttnBlock;
use super::causal_conv_2d::CausalConv2d;
use super::downsample::Downsample;
use super::model_configurator::{AudioVaeConfig, CausalityAxis};
use super::resnet::{Norm, ResnetBlock};
use super::upsample::Upsample;
use crate::error::bad_shape;

/// Mel frames per latent frame.
pub const LATENT_DOWNSAMPLE_FACTOR: usize = 4;

/// Latent statistics on the patchified view `[B, T, C·F]` (`per_channel_statistics.*`).
struct Statistics {
    std: Tensor,
    mean: Tensor,
}

impl Statistics {
    fn new(n: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            std: vb.get(n, "std-of-means")?,
            mean: vb.get(n, "mean-of-means")?,
        })
    }

    /// `f` applied to `[B, C, T, F]` seen as `[B, T, C·F]`.
    fn on_patched(&self, x: &Tensor, f: impl Fn(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
        let (b, c, t, fr) = x.dims4()?;
        let p = x
            .permute((0, 2, 1, 3))?
            .contiguous()?
            .reshape((b, t, c * fr))?;
        f(&p)?
            .reshape((b, t, c, fr))?
            .permute((0, 2, 1, 3))?
            .contiguous()
    }

    fn normalize(&self, x: &Tensor) -> Result<Tensor> {
        let (m, s) = (
            self.mean.to_dtype(x.dtype())?,
            self.std.to_dtype(x.dtype())?,
        );
        self.on_patched(x, |p| p.broadcast_sub(&m)?.broadcast_div(&s))
    }

    fn un_normalize(&self, x: &Tensor) -> Result<Tensor> {
        let (m, s) = (
            self.mean.to_dtype(x.dtype())?,
            self.std.to_dtype(x.dtype())?,
        );
        self.on_patched(x, |p| p.broadcast_mul(&s)?.broadcast_add(&m))
    }
}

/// One resolution level: res blocks (each optionally followed by attention).
struct Level {
    blocks: Vec<ResnetBlock>,
    attn: Vec<AttnBlock>,
    down: Option<Downsample>,
    up: Option<Upsample>,
}

impl Level {
    /// The `count` ResNet blocks of a level from `channels.0` to `channels.1` channels, each
    /// followed by self-attention when `with_attn` (the level's resolution is listed in
    /// `attn_resolutions`).
    fn blocks(
        cfg: &AudioVaeConfig,
        count: usize,
        (mut block_in, block_out): (usize, usize),
        with_attn: bool,
        vb: &VarBuilder,
    ) -> Result<(Vec<ResnetBlock>, Vec<AttnBlock>)> {
        let (n, a) = (cfg.norm_type, cfg.causality_axis);
        let (mut blocks, mut attn) = (Vec::new(), Vec::new());
        for j in 0..count {
            blocks.push(ResnetBlock::new(
                block_in,
                block_out,
                n,
                a,
                vb.pp("block").pp(j),
            )?);
            block_in = block_out;
            if with_attn {
                let vb_a = vb.pp("attn").pp(attn.len());
                attn.push(AttnBlock::new(
                    block_in,
                    Norm::new(n, block_in, vb_a.pp("norm"))?,
                    vb_a,
                )?);
            }
        }
        Ok((blocks, attn))
    }
}

impl Level {
    fn run(&self, mut h: Tensor) -> Result<Tensor> {
        for (i, block) in self.blocks.iter().enumerate() {
            h = block.forward(&h)?;
            if let Some(a) = self.attn.get(i) {
                h = a.forward(&h)?;
            }
        }
        Ok(h)
    }
}

struct Mid {
    block_1: ResnetBlock,
    attn_1: Option<AttnBlock>,
    block_2: ResnetBlock,
}

impl Mid {
    fn new(cfg: &AudioVaeConfig, ch: usize, vb: VarBuilder) -> Result<Self> {
        let (n, a) = (cfg.norm_type, cfg.causality_axis);
        Ok(Self {
            block_1: ResnetBlock::new(ch, ch, n, a, vb.pp("block_1"))?,
            attn_1: if cfg.mid_block_add_attention {
                Some(AttnBlock::new(
                    ch,
                    Norm::new(n, ch, vb.pp("attn_1.norm"))?,
                    vb.pp("attn_1"),
                )?)
            } else {
                None
            },
            block_2: ResnetBlock::new(ch, ch, n, a, vb.pp("block_2"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = self.block_1.forward(x)?;
        if let Some(a) = &self.attn_1 {
            h = a.forward(&h)?;
        }
        self.block_2.forward(&h)
    }
}

/// Mel spectrogram `[B, C, T, mels]` -> normalised latent `[B, z, T', mels/4]`.
pub struct AudioEncoder {
    cfg: AudioVaeConfig,
    conv_in: CausalConv2d,
    down: Vec<Level>,
    mid: Mid,
    norm_out: Norm,
    conv_out: CausalConv2d,
    stats: Statistics,
}

impl AudioEncoder {
    pub fn new(cfg: &AudioVaeConfig, vb: VarBuilder) -> crate::Result<Self> {
        cfg.validate()?;
        let (n, a) = (cfg.norm_type, cfg.causality_axis);
        let levels = cfg.ch_mult.len();
        let mut down = Vec::with_capacity(levels);
        let mut res = cfg.resolution;
        let mut block_in = cfg.ch;
        for (i, &mult) in cfg.ch_mult.iter().enumerate() {
            let vb_l = vb.pp("down").pp(i);
            block_in = cfg.ch * if i == 0 { 1 } else { cfg.ch_mult[i - 1] };
            let block_out = cfg.ch * mult;
            let with_attn = cfg.attn_resolutions.contains(&res);
            let (blocks, attn) = Level::blocks(
                cfg,
                cfg.num_res_blocks,
                (block_in, block_out),
                with_attn,
                &vb_l,
            )?;
            if !blocks.is_empty() {
                block_in = block_out;
            }
            let ds = if i + 1 != levels {
                res /= 2;
                Some(Downsample::new(block_in, a, vb_l.pp("downsample"))?)
            } else {
                None
            };
            down.push(Level {
                blocks,
                attn,
                down: ds,
                up: None,
            });
        }
        let z_out = if cfg.double_z {
            2 * cfg.z_channels
        } else {
            cfg.z_channels
        };
        Ok(Self {
            cfg: cfg.clone(),
            conv_in: CausalConv2d::new(cfg.in_channels, cfg.ch, 3, a, vb.pp("conv_in"))?,
            mid: Mid::new(cfg, block_in, vb.pp("mid"))?,
            norm_out: Norm::new(n, block_in, vb.pp("norm_out"))?,
            conv_out: CausalConv2d::new(block_in, z_out, 3, a, vb.pp("conv_out"))?,
            stats: Statistics::new(cfg.ch, vb.pp("per_channel_statistics"))?,
            down,
        })
    }

    pub fn forward(&self, spectrogram: &Tensor) -> crate::Result<Tensor> {
        let dims = spectrogram.dims();
        if dims.len() != 4 || dims[1] != self.cfg.in_channels {
            return Err(bad_shape(
                "mel spectrogram",
                dims,
                format!("[B, {}, time, mels]", self.cfg.in_channels),
            ));
        }
        let mut h = self.conv_in.forward(spectrogram)?;
        for level in &self.down {
            h = level.run(h)?;
            if let Some(d) = &level.down {
                h = d.forward(&h)?;
            }
        }
        h = self.mid.forward(&h)?;
        h = self.conv_out.forward(&self.norm_out.forward(&h)?.silu()?)?;
        // the means (first half when the encoder also predicts a log-variance)
        let means = if self.cfg.double_z {
            h.narrow(1, 0, h.dim(1)? / 2)?
        } else {
            h
        };
        Ok(self.stats.normalize(&means)?)
    }
}

/// Normalised latent `[B, z, T', F']` -> mel spectrogram `[B, out_ch, 4T' − 3, mels]` (causal).
pub struct AudioDecoder {
    cfg: AudioVaeConfig,
    conv_in: CausalConv2d,
    mid: Mid,
    /// Levels in execution order (deepest first).
    up: Vec<Level>,
    norm_out: Norm,
    conv_out: CausalConv2d,
    stats: Statistics,
}

impl AudioDecoder {
    pub fn new(cfg: &AudioVaeConfig, vb: VarBuilder) -> crate::Result<Self> {
        cfg.validate()?;
        let (n, a) = (cfg.norm_type, cfg.causality_axis);
        let levels = cfg.ch_mult.len();
        let base = cfg.ch * cfg.ch_mult[levels - 1];
        let mut res = cfg.resolution >> (levels - 1);
        let mut block_in = base;
        let mut up = Vec::with_capacity(levels);
        for level in (0..levels).rev() {
            let vb_l = vb.pp("up").pp(level);
            let block_out = cfg.ch * cfg.ch_mult[level];
            let with_attn = cfg.attn_resolutions.contains(&res);
            let (blocks, attn) = Level::blocks(
                cfg,
                cfg.num_res_blocks + 1,
                (block_in, block_out),
                with_attn,
                &vb_l,
            )?;
            block_in = block_out;
            let us = if level != 0 {
                res *= 2;
                Some(Upsample::new(block_in, a, vb_l.pp("upsample"))?)
            } else {
                None
            };
            up.push(Level {
                blocks,
                attn,
                down: None,
                up: us,
            });
        }
        Ok(Self {
            cfg: cfg.clone(),
            conv_in: CausalConv2d::new(cfg.z_channels, base, 3, a, vb.pp("conv_in"))?,
            mid: Mid::new(cfg, base, vb.pp("mid"))?,
            norm_out: Norm::new(n, block_in, vb.pp("norm_out"))?,
            conv_out: CausalConv2d::new(block_in, cfg.out_ch, 3, a, vb.pp("conv_out"))?,
            stats: Statistics::new(cfg.ch, vb.pp("per_channel_statistics"))?,
            up,
        })
    }

    pub fn forward(&self, latent: &Tensor) -> crate::Result<Tensor> {
        let dims = latent.dims();
        if dims.len() != 4 || dims[1] != self.cfg.z_channels {
            return Err(bad_shape(
                "audio latent",
                dims,
                format!("[B, {}, frames, mel_bins]", self.cfg.z_channels),
            ));
        }
        let (b, _, frames, mel) = latent.dims4()?;
        if self.cfg.z_channels * mel != self.cfg.ch {
            return Err(bad_shape(
                "audio latent",
                dims,
                format!(
                    "z_channels x mel_bins = {} (the latent statistics' length)",
                    self.cfg.ch
                ),
            ));
        }
        let x = self.stats.un_normalize(latent)?;
        let mut target_t = frames * LATENT_DOWNSAMPLE_FACTOR;
        if self.cfg.causality_axis != CausalityAxis::None {
            target_t = target_t.saturating_sub(LATENT_DOWNSAMPLE_FACTOR - 1).max(1);
        }
        let target_f = self.cfg.mel_bins.unwrap_or(mel);
        let mut h = self.mid.forward(&self.conv_in.forward(&x)?)?;
        for level in &self.up {
            h = level.run(h)?;
            if let Some(u) = &level.up {
                h = u.forward(&h)?;
            }
        }
        h = self.conv_out.forward(&self.norm_out.forward(&h)?.silu()?)?;
        // crop, then zero-pad, to [B, out_ch, target_t, target_f]
        let (_, c, t, f) = h.dims4()?;
        let h = h
            .narrow(1, 0, c.min(self.cfg.out_ch))?
            .narrow(2, 0, t.min(target_t))?
            .narrow(3, 0, f.min(target_f))?;
        let h = h
            .pad_with_zeros(2, 0, target_t - t.min(target_t))?
            .pad_with_zeros(3, 0, target_f - f.min(target_f))?;
        debug_assert_eq!(h.dims()[0], b);
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use candle_core::{DType, Device, Tensor};
    use serde_json::json;

    use super::*;
    use crate::loader::synthetic::random_weights;
    use crate::loader::StateDict;
    use crate::Error;

    fn cfg() -> AudioVaeConfig {
        AudioVaeConfig::from_checkpoint_config(&json!({"audio_vae": {"model": {"params": {"ddconfig": {
            "ch": 8, "ch_mult": [1, 2, 2], "num_res_blocks": 1, "attn_resolutions": [], "z_channels": 2,
            "mid_block_add_attention": false, "mel_bins": 16}}}}}))
        .unwrap()
    }

    #[test]
    fn shapes_and_typed_errors() -> crate::Result<()> {
        let cfg = cfg();
        let w = random_weights(2, DType::F32, "", |vb| AudioDecoder::new(&cfg, vb))?;
        let sd = Arc::new(StateDict::from_tensors(w));
        let dec = AudioDecoder::new(&cfg, sd.var_builder(DType::F32, &Device::Cpu))?;
        // 4T − 3 mel frames for T latent frames (causal)
        for t in [1, 2, 9] {
            let mel = dec.forward(&Tensor::zeros((1, 2, t, 4), DType::F32, &Device::Cpu)?)?;
            assert_eq!(mel.dims(), &[1, 2, (4 * t).saturating_sub(3).max(1), 16]);
        }
        let err = dec
            .forward(&Tensor::zeros((1, 3, 4, 4), DType::F32, &Device::Cpu)?)
            .unwrap_err();
        assert!(matches!(err, Error::TensorShape { .. }), "{err}");
        let w = random_weights(3, DType::F32, "", |vb| AudioEncoder::new(&cfg, vb))?;
        let sd = Arc::new(StateDict::from_tensors(w));
        let enc = AudioEncoder::new(&cfg, sd.var_builder(DType::F32, &Device::Cpu))?;
        let err = enc
            .forward(&Tensor::zeros((1, 1, 8, 16), DType::F32, &Device::Cpu)?)
            .unwrap_err();
        assert!(matches!(err, Error::TensorShape { .. }), "{err}");
        // causal layers with GroupNorm are rejected, as in the reference
        let bad =
            AudioVaeConfig::from_checkpoint_config(&json!({"audio_vae": {"model": {"params": {
            "ddconfig": {"norm_type": "group"}}}}}));
        assert!(matches!(bad, Err(Error::UnsupportedConfig { .. })));
        Ok(())
    }
}

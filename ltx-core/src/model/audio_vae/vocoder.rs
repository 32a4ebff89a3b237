//! Port of the HiFi-GAN path of `ltx_core/model/audio_vae/vocoder.py` (LTX-2's vocoder, `resblock`
//! "1" or "2"). The BigVGAN-v2 blocks and the LTX-2.3 bandwidth extension come later: such configs
//! are a typed `UnsupportedConfig` error for now.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Conv1d, Conv1dConfig, ConvTranspose1d, ConvTranspose1dConfig, VarBuilder};
use serde_json::Value;

use crate::error::{unsupported, Error};
use crate::loader::SDOps;

/// Slope of the leaky ReLUs inside the network (the one before `conv_post` is torch's default 0.01).
const LRELU_SLOPE: f64 = 0.1;

fn leaky_relu(x: &Tensor, slope: f64) -> Result<Tensor> {
    let pos = x.relu()?;
    let neg = (x - &pos)?;
    pos + (neg * slope)?
}

/// The `vocoder` section of a checkpoint config (HiFi-GAN form).
#[derive(Clone, Debug, PartialEq)]
pub struct VocoderConfig {
    pub resblock_kernel_sizes: Vec<usize>,
    pub upsample_rates: Vec<usize>,
    pub upsample_kernel_sizes: Vec<usize>,
    pub resblock_dilation_sizes: Vec<Vec<usize>>,
    pub upsample_initial_channel: usize,
    /// "1" or "2".
    pub resblock: String,
    pub output_sampling_rate: usize,
}

impl VocoderConfig {
    pub fn from_checkpoint_config(config: &Value) -> crate::Result<Self> {
        let v = config.get("vocoder").cloned().unwrap_or(Value::Null);
        if v.get("bwe").is_some() {
            return Err(unsupported(
                "vocoder.bwe",
                "present",
                "absent (the LTX-2.3 bandwidth-extension vocoder is not ported yet)",
            ));
        }
        let list = |k: &str, d: Vec<usize>| -> crate::Result<Vec<usize>> {
            match v.get(k) {
                None => Ok(d),
                Some(x) => serde_json::from_value(x.clone())
                    .map_err(|e| Error::InvalidConfig(format!("vocoder.{k}: {e}"))),
            }
        };
        let resblock = v
            .get("resblock")
            .and_then(Value::as_str)
            .unwrap_or("1")
            .to_string();
        if resblock != "1" {
            return Err(unsupported(
                "vocoder.resblock",
                &resblock,
                "\"1\" (the reference asserts it)",
            ));
        }
        if v.get("stereo").and_then(Value::as_bool) != Some(true) {
            return Err(unsupported(
                "vocoder.stereo",
                v.get("stereo").cloned().unwrap_or(Value::Null),
                "true",
            ));
        }
        let cfg = Self {
            resblock_kernel_sizes: list("resblock_kernel_sizes", vec![3, 7, 11])?,
            upsample_rates: list("upsample_rates", vec![6, 5, 2, 2, 2])?,
            upsample_kernel_sizes: list("upsample_kernel_sizes", vec![16, 15, 8, 4, 4])?,
            resblock_dilation_sizes: match v.get("resblock_dilation_sizes") {
                None => vec![vec![1, 3, 5]; 3],
                Some(x) => serde_json::from_value(x.clone()).map_err(|e| {
                    Error::InvalidConfig(format!("vocoder.resblock_dilation_sizes: {e}"))
                })?,
            },
            upsample_initial_channel: v
                .get("upsample_initial_channel")
                .and_then(Value::as_u64)
                .unwrap_or(1024) as usize,
            resblock,
            output_sampling_rate: v
                .get("output_sampling_rate")
                .and_then(Value::as_u64)
                .unwrap_or(24000) as usize,
        };
        if cfg.upsample_rates.len() != cfg.upsample_kernel_sizes.len()
            || cfg.resblock_kernel_sizes.len() != cfg.resblock_dilation_sizes.len()
            || cfg.upsample_initial_channel >> cfg.upsample_rates.len() == 0
        {
            return Err(Error::InvalidConfig(
                "vocoder: inconsistent upsample / resblock lists".into(),
            ));
        }
        Ok(cfg)
    }
}

/// `vocoder.*` -> vocoder keys. The reference strips exactly one leading `vocoder.`; for the
/// HiFi-GAN layout every key has just one, so a replacement does the same (the BWE layout's
/// `vocoder.vocoder.*` keys will need the strip-once form).
pub fn vocoder_keys_filter() -> SDOps {
    SDOps::new("VOCODER_KEYS_FILTER")
        .with_matching("vocoder.", "")
        .with_replacement("vocoder.", "")
}

/// HiFi-GAN `ResBlock1`: three (leaky ReLU, dilated conv, leaky ReLU, conv) residual steps.
struct ResBlock1 {
    convs1: Vec<Conv1d>,
    convs2: Vec<Conv1d>,
}

fn same_conv(ch: usize, k: usize, dilation: usize, vb: VarBuilder) -> Result<Conv1d> {
    let cfg = Conv1dConfig {
        padding: dilation * (k - 1) / 2,
        dilation,
        ..Default::default()
    };
    candle_nn::conv1d(ch, ch, k, cfg, vb)
}

impl ResBlock1 {
    fn new(ch: usize, k: usize, dilations: &[usize], vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            convs1: dilations
                .iter()
                .enumerate()
                .map(|(i, &d)| same_conv(ch, k, d, vb.pp("convs1").pp(i)))
                .collect::<Result<_>>()?,
            convs2: (0..dilations.len())
                .map(|i| same_conv(ch, k, 1, vb.pp("convs2").pp(i)))
                .collect::<Result<_>>()?,
        })
    }
}

impl Module for ResBlock1 {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for (c1, c2) in self.convs1.iter().zip(&self.convs2) {
            let t = c1.forward(&leaky_relu(&x, LRELU_SLOPE)?)?;
            let t = c2.forward(&leaky_relu(&t, LRELU_SLOPE)?)?;
            x = (t + x)?;
        }
        Ok(x)
    }
}

/// The HiFi-GAN vocoder: stereo mel `[B, 2, T, 64]` -> waveform `[B, 2, T·Π rates]`.
pub struct Vocoder {
    cfg: VocoderConfig,
    conv_pre: Conv1d,
    ups: Vec<ConvTranspose1d>,
    resblocks: Vec<ResBlock1>,
    conv_post: Conv1d,
}

impl Vocoder {
    pub fn new(cfg: &VocoderConfig, vb: VarBuilder) -> Result<Self> {
        let c0 = cfg.upsample_initial_channel;
        let pad3 = Conv1dConfig {
            padding: 3,
            ..Default::default()
        };
        let mut ups = Vec::new();
        let mut resblocks = Vec::new();
        for (i, (&rate, &k)) in cfg
            .upsample_rates
            .iter()
            .zip(&cfg.upsample_kernel_sizes)
            .enumerate()
        {
            let tcfg = ConvTranspose1dConfig {
                padding: (k - rate) / 2,
                stride: rate,
                ..Default::default()
            };
            ups.push(candle_nn::conv_transpose1d(
                c0 >> i,
                c0 >> (i + 1),
                k,
                tcfg,
                vb.pp("ups").pp(i),
            )?);
            for (kk, dil) in cfg
                .resblock_kernel_sizes
                .iter()
                .zip(&cfg.resblock_dilation_sizes)
            {
                let idx = resblocks.len();
                resblocks.push(ResBlock1::new(
                    c0 >> (i + 1),
                    *kk,
                    dil,
                    vb.pp("resblocks").pp(idx),
                )?);
            }
        }
        let last = c0 >> cfg.upsample_rates.len();
        Ok(Self {
            cfg: cfg.clone(),
            conv_pre: candle_nn::conv1d(128, c0, 7, pad3, vb.pp("conv_pre"))?,
            ups,
            resblocks,
            conv_post: candle_nn::conv1d(last, 2, 7, pad3, vb.pp("conv_post"))?,
        })
    }

    pub fn output_sampling_rate(&self) -> usize {
        self.cfg.output_sampling_rate
    }

    /// `[B, 2, T, 64]` log-mel -> `[B, 2, samples]` in [-1, 1].
    pub fn forward(&self, mel: &Tensor) -> crate::Result<Tensor> {
        let dims = mel.dims();
        if dims.len() != 4 || dims[1] != 2 || dims[3] * 2 != 128 {
            return Err(crate::error::bad_shape(
                "vocoder mel",
                dims,
                "[B, 2, frames, 64]",
            ));
        }
        let (b, _, t, m) = mel.dims4()?;
        // [B, 2, T, M] -> [B, 2, M, T] -> [B, 2·M, T]
        let mut x = mel.transpose(2, 3)?.contiguous()?.reshape((b, 2 * m, t))?;
        x = self.conv_pre.forward(&x)?;
        let n = self.cfg.resblock_kernel_sizes.len();
        for (i, up) in self.ups.iter().enumerate() {
            x = up.forward(&leaky_relu(&x, LRELU_SLOPE)?)?;
            let outs = self.resblocks[i * n..(i + 1) * n]
                .iter()
                .map(|r| r.forward(&x))
                .collect::<Result<Vec<_>>>()?;
            x = (Tensor::stack(&outs, 0)?.sum(0)? / n as f64)?;
        }
        x = self.conv_post.forward(&leaky_relu(&x, 0.01)?)?;
        Ok(x.tanh()?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use candle_core::{DType, Device};
    use serde_json::json;

    use super::*;
    use crate::loader::synthetic::random_weights;
    use crate::loader::StateDict;

    #[test]
    fn configs_and_shapes() -> crate::Result<()> {
        let base = json!({"resblock": "1", "stereo": true, "upsample_initial_channel": 8,
            "upsample_rates": [2, 2], "upsample_kernel_sizes": [4, 4], "resblock_kernel_sizes": [3],
            "resblock_dilation_sizes": [[1, 3]]});
        let cfg = VocoderConfig::from_checkpoint_config(&json!({ "vocoder": base.clone() }))?;
        let w = random_weights(4, DType::F32, "", |vb| {
            Vocoder::new(&cfg, vb).map_err(Error::from)
        })?;
        let sd = Arc::new(StateDict::from_tensors(w));
        let voc = Vocoder::new(&cfg, sd.var_builder(DType::F32, &Device::Cpu))?;
        let wav = voc.forward(&Tensor::zeros((1, 2, 5, 64), DType::F32, &Device::Cpu)?)?;
        assert_eq!(wav.dims(), &[1, 2, 20]);
        let bad = voc.forward(&Tensor::zeros((1, 2, 5, 32), DType::F32, &Device::Cpu)?);
        assert!(matches!(bad, Err(Error::TensorShape { .. })));
        let mut amp = base.clone();
        amp["resblock"] = json!("AMP1");
        assert!(VocoderConfig::from_checkpoint_config(&json!({ "vocoder": amp })).is_err());
        let bwe = json!({"vocoder": {"vocoder": base, "bwe": {}}});
        assert!(matches!(
            VocoderConfig::from_checkpoint_config(&bwe),
            Err(Error::UnsupportedConfig { .. })
        ));
        Ok(())
    }
}

#[cfg(test)]
mod length_tests {
    use std::sync::Arc;

    use candle_core::{DType, Device, Tensor};
    use serde_json::json;

    use crate::loader::synthetic::random_weights;
    use crate::loader::StateDict;
    use crate::model::audio_vae::{decode_audio, AudioDecoder, AudioVaeConfig};
    use crate::Error;

    use super::*;

    /// The amplitude of a decode must not depend on the clip length: the first 0.8 s of a 1 s and
    /// of a 4 s decode of the same latent prefix carry the same per-window RMS.
    #[test]
    fn amplitude_does_not_depend_on_clip_length() -> crate::Result<()> {
        let vcfg = AudioVaeConfig::from_checkpoint_config(
            &json!({"audio_vae": {"model": {"params": {
            "ddconfig": {"ch": 32, "ch_mult": [1, 2, 2], "num_res_blocks": 1, "attn_resolutions": [],
                "z_channels": 2, "mid_block_add_attention": false, "mel_bins": 64}}}}}),
        )?;
        let w = random_weights(6, DType::F32, "", |vb| AudioDecoder::new(&vcfg, vb))?;
        let dec = AudioDecoder::new(
            &vcfg,
            Arc::new(StateDict::from_tensors(w)).var_builder(DType::F32, &Device::Cpu),
        )?;
        let cfg = VocoderConfig::from_checkpoint_config(
            &json!({"vocoder": {"resblock": "1", "stereo": true,
            "upsample_initial_channel": 32, "upsample_rates": [6, 5, 2, 2, 2],
            "upsample_kernel_sizes": [16, 15, 8, 4, 4], "resblock_kernel_sizes": [3],
            "resblock_dilation_sizes": [[1, 3, 5]]}}),
        )?;
        let w = random_weights(7, DType::F32, "", |vb| {
            Vocoder::new(&cfg, vb).map_err(Error::from)
        })?;
        let voc = Vocoder::new(
            &cfg,
            Arc::new(StateDict::from_tensors(w)).var_builder(DType::F32, &Device::Cpu),
        )?;
        // 25 latent frames per second of audio
        let long = Tensor::randn(0f32, 1.0, (1, 2, 100, 16), &Device::Cpu)?;
        let short = long.narrow(2, 0, 25)?.contiguous()?;
        let a = decode_audio(&short, &dec, &voc)?;
        let b = decode_audio(&long, &dec, &voc)?;
        assert_eq!(a.sampling_rate, 24000);
        let rms = |t: &Tensor, start: usize, len: usize| -> f32 {
            t.narrow(2, start, len)
                .unwrap()
                .sqr()
                .unwrap()
                .mean_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                .sqrt()
        };
        let window = 2400; // 0.1 s
        for w in 0..8 {
            let (ra, rb) = (
                rms(&a.waveform, w * window, window),
                rms(&b.waveform, w * window, window),
            );
            assert!(
                ra > 0.0 && (ra - rb).abs() <= 0.01 * rb,
                "window {w}: {ra} vs {rb}"
            );
        }
        Ok(())
    }
}

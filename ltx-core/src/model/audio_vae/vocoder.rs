//! Port of `ltx_core/model/audio_vae/vocoder.py` and the vocoder half of `model_configurator.py`:
//! the mel-to-waveform generator (`Vocoder`: HiFi-GAN `ResBlock1` for LTX-2, BigVGAN-v2
//! `AMPBlock1` with anti-aliased Snake/SnakeBeta for LTX-2.3), the causal `MelStft` and
//! `VocoderWithBwe` (LTX-2.3: 16 kHz vocoder + bandwidth extension to 48 kHz), and
//! `VocoderModel`, which picks between them from the checkpoint config like the reference's
//! `VocoderConfigurator`.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::{Conv1d, Conv1dConfig, ConvTranspose1d, ConvTranspose1dConfig, VarBuilder};
use serde_json::Value;

use super::anti_alias::{Activation1d, UpSample1d};
use crate::error::{unsupported, Error};
use crate::loader::SDOps;

/// Slope of the leaky ReLUs inside the HiFi-GAN network (the one before `conv_post` is torch's
/// default 0.01).
const LRELU_SLOPE: f64 = 0.1;

fn leaky_relu(x: &Tensor, slope: f64) -> Result<Tensor> {
    let pos = x.relu()?;
    let neg = (x - &pos)?;
    pos + (neg * slope)?
}

/// Residual block family (`resblock`): HiFi-GAN "1" or BigVGAN-v2 "AMP1".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResBlockKind {
    HifiGan,
    Amp1,
}

/// One mel-to-waveform generator (a `Vocoder` of the reference): a flat config section.
#[derive(Clone, Debug, PartialEq)]
pub struct VocoderConfig {
    pub resblock_kernel_sizes: Vec<usize>,
    pub upsample_rates: Vec<usize>,
    pub upsample_kernel_sizes: Vec<usize>,
    pub resblock_dilation_sizes: Vec<Vec<usize>>,
    pub upsample_initial_channel: usize,
    pub resblock: ResBlockKind,
    pub output_sampling_rate: usize,
    /// `SnakeBeta` (true) or `Snake` inside the AMP blocks (ignored for HiFi-GAN).
    pub snake_beta: bool,
    pub use_tanh_at_final: bool,
    pub apply_final_activation: bool,
    pub use_bias_at_final: bool,
}

fn cfg_err(section: &str, key: &str, e: impl std::fmt::Display) -> Error {
    Error::InvalidConfig(format!("{section}.{key}: {e}"))
}

fn get_list(v: &Value, section: &str, k: &str, d: Vec<usize>) -> crate::Result<Vec<usize>> {
    match v.get(k) {
        None => Ok(d),
        Some(x) => serde_json::from_value(x.clone()).map_err(|e| cfg_err(section, k, e)),
    }
}

fn get_usize(v: &Value, section: &str, k: &str, d: Option<usize>) -> crate::Result<usize> {
    match v.get(k) {
        None => d.ok_or_else(|| Error::InvalidConfig(format!("`{section}.{k}` is missing"))),
        Some(x) => x
            .as_u64()
            .map(|x| x as usize)
            .ok_or_else(|| cfg_err(section, k, format!("expected an integer, got {x}"))),
    }
}

fn get_bool(v: &Value, section: &str, k: &str, d: bool) -> crate::Result<bool> {
    match v.get(k) {
        None => Ok(d),
        Some(x) => x
            .as_bool()
            .ok_or_else(|| cfg_err(section, k, format!("expected a bool, got {x}"))),
    }
}

/// The reference's `check_config_value`: `key` must be present and equal `expected`.
fn check_value(v: &Value, section: &str, key: &str, expected: Value) -> crate::Result<()> {
    let actual = v.get(key).cloned().unwrap_or(Value::Null);
    if actual != expected {
        return Err(unsupported(
            &format!("{section}.{key}"),
            actual,
            &expected.to_string(),
        ));
    }
    Ok(())
}

impl VocoderConfig {
    /// `_vocoder_from_config(section, apply_final_activation, output_sampling_rate)`.
    pub fn from_section(
        v: &Value,
        section: &str,
        apply_final_activation: bool,
        output_sampling_rate: Option<usize>,
    ) -> crate::Result<Self> {
        let resblock = match v.get("resblock").and_then(Value::as_str).unwrap_or("1") {
            "1" => ResBlockKind::HifiGan,
            "AMP1" => ResBlockKind::Amp1,
            other => {
                return Err(unsupported(
                    &format!("{section}.resblock"),
                    other,
                    "\"1\" (HiFi-GAN) or \"AMP1\" (BigVGAN v2)",
                ))
            }
        };
        let snake_beta = match v
            .get("activation")
            .and_then(Value::as_str)
            .unwrap_or("snake")
        {
            "snake" => false,
            "snakebeta" => true,
            other => {
                return Err(unsupported(
                    &format!("{section}.activation"),
                    other,
                    "\"snake\" or \"snakebeta\"",
                ))
            }
        };
        let resblock_dilation_sizes: Vec<Vec<usize>> = match v.get("resblock_dilation_sizes") {
            None => vec![vec![1, 3, 5]; 3],
            Some(x) => serde_json::from_value(x.clone())
                .map_err(|e| cfg_err(section, "resblock_dilation_sizes", e))?,
        };
        let cfg = Self {
            resblock_kernel_sizes: get_list(v, section, "resblock_kernel_sizes", vec![3, 7, 11])?,
            upsample_rates: get_list(v, section, "upsample_rates", vec![6, 5, 2, 2, 2])?,
            upsample_kernel_sizes: get_list(
                v,
                section,
                "upsample_kernel_sizes",
                vec![16, 15, 8, 4, 4],
            )?,
            resblock_dilation_sizes,
            upsample_initial_channel: get_usize(
                v,
                section,
                "upsample_initial_channel",
                Some(1024),
            )?,
            resblock,
            output_sampling_rate: match output_sampling_rate {
                Some(r) => r,
                None => get_usize(v, section, "output_sampling_rate", Some(24000))?,
            },
            snake_beta,
            use_tanh_at_final: get_bool(v, section, "use_tanh_at_final", true)?,
            apply_final_activation,
            use_bias_at_final: get_bool(v, section, "use_bias_at_final", true)?,
        };
        let n_up = cfg.upsample_rates.len();
        if n_up != cfg.upsample_kernel_sizes.len()
            || cfg.resblock_kernel_sizes.len() != cfg.resblock_dilation_sizes.len()
            || cfg.resblock_kernel_sizes.is_empty()
            || cfg.upsample_initial_channel >> n_up == 0
            || cfg.upsample_rates.contains(&0)
            || cfg
                .upsample_rates
                .iter()
                .zip(&cfg.upsample_kernel_sizes)
                .any(|(&r, &k)| k < r || (k - r) % 2 != 0)
        {
            return Err(Error::InvalidConfig(format!(
                "{section}: inconsistent upsample / resblock lists (every kernel - rate must be even \
                 and non-negative, one dilation list per resblock kernel)"
            )));
        }
        if cfg.resblock_dilation_sizes.iter().any(|d| d.len() != 3)
            || cfg.resblock_kernel_sizes.iter().any(|k| k % 2 == 0)
        {
            return Err(Error::InvalidConfig(format!(
                "{section}: every resblock has three dilations and an odd kernel"
            )));
        }
        Ok(cfg)
    }

    /// Total upsampling factor (samples per mel frame).
    pub fn hop(&self) -> usize {
        self.upsample_rates.iter().product()
    }
}

/// The `bwe` section of an LTX-2.3 vocoder config.
#[derive(Clone, Debug, PartialEq)]
pub struct BweConfig {
    /// The BWE generator (a `Vocoder` without final activation).
    pub generator: VocoderConfig,
    pub n_fft: usize,
    pub hop_length: usize,
    pub num_mels: usize,
    pub input_sampling_rate: usize,
    pub output_sampling_rate: usize,
}

/// The checkpoint's `vocoder` config: plain (LTX-2) or with bandwidth extension (LTX-2.3).
#[derive(Clone, Debug, PartialEq)]
pub enum VocoderModelConfig {
    Plain(VocoderConfig),
    Bwe {
        vocoder: VocoderConfig,
        bwe: BweConfig,
    },
}

impl VocoderModelConfig {
    /// `VocoderConfigurator.from_config`: no `bwe` key -> HiFi-GAN (`resblock "1"`, stereo);
    /// otherwise nested `vocoder` + `bwe`, both AMP1 + snakebeta + stereo.
    pub fn from_checkpoint_config(config: &Value) -> crate::Result<Self> {
        let v = config.get("vocoder").cloned().unwrap_or(Value::Null);
        let Some(bwe) = v.get("bwe") else {
            check_value(&v, "vocoder", "resblock", "1".into())?;
            check_value(&v, "vocoder", "stereo", true.into())?;
            return Ok(Self::Plain(VocoderConfig::from_section(
                &v, "vocoder", true, None,
            )?));
        };
        let voc = v.get("vocoder").cloned().unwrap_or(Value::Null);
        for (section, s) in [("vocoder.vocoder", &voc), ("vocoder.bwe", bwe)] {
            check_value(s, section, "resblock", "AMP1".into())?;
            check_value(s, section, "stereo", true.into())?;
            check_value(s, section, "activation", "snakebeta".into())?;
        }
        let input_sampling_rate = get_usize(bwe, "vocoder.bwe", "input_sampling_rate", None)?;
        let output_sampling_rate = get_usize(bwe, "vocoder.bwe", "output_sampling_rate", None)?;
        let n_fft = get_usize(bwe, "vocoder.bwe", "n_fft", None)?;
        let hop_length = get_usize(bwe, "vocoder.bwe", "hop_length", None)?;
        let num_mels = get_usize(bwe, "vocoder.bwe", "num_mels", None)?;
        if input_sampling_rate == 0
            || output_sampling_rate % input_sampling_rate != 0
            || output_sampling_rate < input_sampling_rate
            || hop_length == 0
            || n_fft < hop_length
            || num_mels * 2 != 128
        {
            return Err(Error::InvalidConfig(format!(
                "vocoder.bwe: rates {input_sampling_rate} -> {output_sampling_rate} must have an \
                 integer ratio, 0 < hop_length ({hop_length}) <= n_fft ({n_fft}), and num_mels \
                 ({num_mels}) x 2 stereo channels must fill the generator's 128 inputs"
            )));
        }
        let vocoder =
            VocoderConfig::from_section(&voc, "vocoder.vocoder", true, Some(input_sampling_rate))?;
        let generator =
            VocoderConfig::from_section(bwe, "vocoder.bwe", false, Some(output_sampling_rate))?;
        let ratio = output_sampling_rate / input_sampling_rate;
        if generator.hop() != hop_length * ratio {
            return Err(Error::InvalidConfig(format!(
                "vocoder.bwe: the generator makes {} samples per mel frame, the skip path {} \
                 (hop_length {hop_length} x ratio {ratio})",
                generator.hop(),
                hop_length * ratio
            )));
        }
        Ok(Self::Bwe {
            vocoder,
            bwe: BweConfig {
                generator,
                n_fft,
                hop_length,
                num_mels,
                input_sampling_rate,
                output_sampling_rate,
            },
        })
    }

    /// Rate of the waveform the model produces.
    pub fn output_sampling_rate(&self) -> usize {
        match self {
            Self::Plain(c) => c.output_sampling_rate,
            Self::Bwe { bwe, .. } => bwe.output_sampling_rate,
        }
    }
}

/// `vocoder.*` -> vocoder keys: the reference removes exactly one leading `vocoder.` (LTX-2.3
/// keys are `vocoder.vocoder.*`, `vocoder.bwe_generator.*`, `vocoder.mel_stft.*`).
pub fn vocoder_keys_filter() -> SDOps {
    SDOps::new("VOCODER_COMFY_KEYS_FILTER")
        .with_matching("vocoder.", "")
        .with_prefix_strip("vocoder.")
}

fn same_conv(ch: usize, k: usize, dilation: usize, vb: VarBuilder) -> Result<Conv1d> {
    let cfg = Conv1dConfig {
        padding: dilation * (k - 1) / 2,
        dilation,
        ..Default::default()
    };
    candle_nn::conv1d(ch, ch, k, cfg, vb)
}

/// One activation of a residual block: leaky ReLU (HiFi-GAN) or anti-aliased snake (AMP).
enum BlockAct {
    Leaky,
    Snake(Box<Activation1d>),
}

impl BlockAct {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Leaky => leaky_relu(x, LRELU_SLOPE),
            Self::Snake(a) => a.forward(x),
        }
    }
}

/// `ResBlock1` (HiFi-GAN) and `AMPBlock1` (BigVGAN v2) share one shape: three (act, dilated
/// conv, act, conv) residual steps.
struct ResBlock {
    convs1: Vec<Conv1d>,
    convs2: Vec<Conv1d>,
    acts1: Vec<BlockAct>,
    acts2: Vec<BlockAct>,
}

impl ResBlock {
    fn new(
        ch: usize,
        k: usize,
        dilations: &[usize],
        kind: ResBlockKind,
        snake_beta: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let acts = |name: &str| -> Result<Vec<BlockAct>> {
            (0..dilations.len())
                .map(|i| match kind {
                    ResBlockKind::HifiGan => Ok(BlockAct::Leaky),
                    ResBlockKind::Amp1 => Ok(BlockAct::Snake(Box::new(Activation1d::new(
                        ch,
                        snake_beta,
                        vb.pp(name).pp(i),
                    )?))),
                })
                .collect()
        };
        Ok(Self {
            convs1: dilations
                .iter()
                .enumerate()
                .map(|(i, &d)| same_conv(ch, k, d, vb.pp("convs1").pp(i)))
                .collect::<Result<_>>()?,
            convs2: (0..dilations.len())
                .map(|i| same_conv(ch, k, 1, vb.pp("convs2").pp(i)))
                .collect::<Result<_>>()?,
            acts1: acts("acts1")?,
            acts2: acts("acts2")?,
        })
    }
}

impl Module for ResBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for i in 0..self.convs1.len() {
            let t = self.convs1[i].forward(&self.acts1[i].forward(&x)?)?;
            let t = self.convs2[i].forward(&self.acts2[i].forward(&t)?)?;
            x = (t + x)?;
        }
        Ok(x)
    }
}

/// The mel-to-waveform generator: stereo mel `[B, 2, T, 64]` -> waveform `[B, 2, T·Π rates]`.
pub struct Vocoder {
    cfg: VocoderConfig,
    conv_pre: Conv1d,
    ups: Vec<ConvTranspose1d>,
    resblocks: Vec<ResBlock>,
    act_post: BlockAct,
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
                resblocks.push(ResBlock::new(
                    c0 >> (i + 1),
                    *kk,
                    dil,
                    cfg.resblock,
                    cfg.snake_beta,
                    vb.pp("resblocks").pp(idx),
                )?);
            }
        }
        let last = c0 >> cfg.upsample_rates.len();
        let act_post = match cfg.resblock {
            ResBlockKind::HifiGan => BlockAct::Leaky,
            // the post activation is SnakeBeta whatever the blocks use
            ResBlockKind::Amp1 => {
                BlockAct::Snake(Box::new(Activation1d::new(last, true, vb.pp("act_post"))?))
            }
        };
        let conv_post = if cfg.use_bias_at_final {
            candle_nn::conv1d(last, 2, 7, pad3, vb.pp("conv_post"))?
        } else {
            candle_nn::conv1d_no_bias(last, 2, 7, pad3, vb.pp("conv_post"))?
        };
        Ok(Self {
            cfg: cfg.clone(),
            conv_pre: candle_nn::conv1d(128, c0, 7, pad3, vb.pp("conv_pre"))?,
            ups,
            resblocks,
            act_post,
            conv_post,
        })
    }

    pub fn config(&self) -> &VocoderConfig {
        &self.cfg
    }

    pub fn output_sampling_rate(&self) -> usize {
        self.cfg.output_sampling_rate
    }

    /// `[B, 2, T, 64]` log-mel -> `[B, 2, T·hop]` (in [-1, 1] with the final activation).
    pub fn forward(&self, mel: &Tensor) -> crate::Result<Tensor> {
        let dims = mel.dims();
        if dims.len() != 4 || dims[1] != 2 || dims[3] * 2 != 128 || dims[2] == 0 {
            return Err(crate::error::bad_shape(
                "vocoder mel",
                dims,
                "[B, 2, frames > 0, 64]",
            ));
        }
        let (b, _, t, m) = mel.dims4()?;
        // [B, 2, T, M] -> [B, 2, M, T] -> [B, 2·M, T]
        let mut x = mel.transpose(2, 3)?.contiguous()?.reshape((b, 2 * m, t))?;
        x = self.conv_pre.forward(&x)?;
        let n = self.cfg.resblock_kernel_sizes.len();
        let amp = self.cfg.resblock == ResBlockKind::Amp1;
        for (i, up) in self.ups.iter().enumerate() {
            if !amp {
                x = leaky_relu(&x, LRELU_SLOPE)?;
            }
            x = up.forward(&x)?;
            let mut acc: Option<Tensor> = None;
            for r in &self.resblocks[i * n..(i + 1) * n] {
                let y = r.forward(&x)?;
                acc = Some(match acc {
                    None => y,
                    Some(a) => (a + y)?,
                });
            }
            x = (acc.expect("at least one resblock") / n as f64)?;
        }
        x = match &self.act_post {
            BlockAct::Leaky => leaky_relu(&x, 0.01)?,
            BlockAct::Snake(a) => a.forward(&x)?,
        };
        x = self.conv_post.forward(&x)?;
        if self.cfg.apply_final_activation {
            x = if self.cfg.use_tanh_at_final {
                x.tanh()?
            } else {
                x.clamp(-1f32, 1f32)?
            };
        }
        Ok(x)
    }
}

/// `MelSTFT`: causal STFT as a strided convolution with the checkpoint's DFT x window bases,
/// magnitude, mel projection with the checkpoint's filterbank, `log(clamp(1e-5))`.
pub struct MelStft {
    /// `[2F, 1, n_fft]`: real rows then imaginary rows.
    forward_basis: Tensor,
    /// `[mels, F]`.
    mel_basis: Tensor,
    hop_length: usize,
    win_length: usize,
}

impl MelStft {
    pub fn new(n_fft: usize, hop_length: usize, num_mels: usize, vb: VarBuilder) -> Result<Self> {
        let n_freqs = n_fft / 2 + 1;
        let forward_basis = vb.get((2 * n_freqs, 1, n_fft), "stft_fn.forward_basis")?;
        // loaded for completeness of the state dict (the inverse transform is never run)
        let _inverse = vb.get((2 * n_freqs, 1, n_fft), "stft_fn.inverse_basis")?;
        Ok(Self {
            forward_basis,
            mel_basis: vb.get((num_mels, n_freqs), "mel_basis")?,
            hop_length,
            win_length: n_fft,
        })
    }

    /// `[N, T]` waveforms -> `[N, mels, frames]` log-mel.
    pub fn log_mel(&self, y: &Tensor) -> Result<Tensor> {
        let left = self.win_length.saturating_sub(self.hop_length);
        let y = y.unsqueeze(1)?.pad_with_zeros(D::Minus1, left, 0)?;
        let spec = y.conv1d(&self.forward_basis, 0, self.hop_length, 1, 1)?;
        let f = spec.dim(1)? / 2;
        let re = spec.narrow(1, 0, f)?;
        let im = spec.narrow(1, f, f)?;
        let mag = (re.sqr()? + im.sqr()?)?.sqrt()?;
        let mel = self
            .mel_basis
            .to_dtype(mag.dtype())?
            .broadcast_matmul(&mag)?;
        mel.clamp(1e-5f32, f32::INFINITY)?.log()
    }
}

/// `VocoderWithBWE` (LTX-2.3): the 16 kHz vocoder, then a BWE generator predicts a residual from
/// the log-mel of its output, added to a hann-sinc upsampled copy; clamp, crop to `ratio · len`.
pub struct VocoderWithBwe {
    vocoder: Vocoder,
    bwe_generator: Vocoder,
    mel_stft: MelStft,
    resampler: UpSample1d,
    cfg: BweConfig,
}

impl VocoderWithBwe {
    pub fn new(vocoder: &VocoderConfig, bwe: &BweConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            vocoder: Vocoder::new(vocoder, vb.pp("vocoder"))?,
            bwe_generator: Vocoder::new(&bwe.generator, vb.pp("bwe_generator"))?,
            mel_stft: MelStft::new(bwe.n_fft, bwe.hop_length, bwe.num_mels, vb.pp("mel_stft"))?,
            resampler: UpSample1d::hann(bwe.output_sampling_rate / bwe.input_sampling_rate),
            cfg: bwe.clone(),
        })
    }

    pub fn forward(&self, mel: &Tensor) -> crate::Result<Tensor> {
        let x = self.vocoder.forward(mel)?;
        let (b, c, len) = x.dims3()?;
        let output_length = len * self.cfg.output_sampling_rate / self.cfg.input_sampling_rate;
        let hop = self.cfg.hop_length;
        let x = if len % hop != 0 {
            x.pad_with_zeros(D::Minus1, 0, hop - len % hop)?
        } else {
            x
        };
        let padded = x.dim(D::Minus1)?;
        let mel = self.mel_stft.log_mel(&x.reshape((b * c, padded))?)?;
        let (_, m, frames) = mel.dims3()?;
        let mel = mel.reshape((b, c, m, frames))?.transpose(2, 3)?;
        let residual = self.bwe_generator.forward(&mel)?;
        let skip = self.resampler.forward(&x)?;
        if residual.dims() != skip.dims() {
            return Err(crate::error::bad_shape(
                "BWE residual",
                residual.dims(),
                format!("{:?} (the resampled skip path)", skip.dims()),
            ));
        }
        Ok((residual + skip)?
            .clamp(-1f32, 1f32)?
            .narrow(D::Minus1, 0, output_length)?)
    }
}

/// The vocoder a checkpoint holds: plain (LTX-2, 24 kHz) or with BWE (LTX-2.3, 48 kHz).
// built once per decode stage; the size difference does not matter
#[allow(clippy::large_enum_variant)]
pub enum VocoderModel {
    Plain(Vocoder),
    Bwe(VocoderWithBwe),
}

impl VocoderModel {
    /// Builds the model from vocoder keys (after [`vocoder_keys_filter`]).
    pub fn new(cfg: &VocoderModelConfig, vb: VarBuilder) -> Result<Self> {
        Ok(match cfg {
            VocoderModelConfig::Plain(c) => Self::Plain(Vocoder::new(c, vb)?),
            VocoderModelConfig::Bwe { vocoder, bwe } => {
                Self::Bwe(VocoderWithBwe::new(vocoder, bwe, vb)?)
            }
        })
    }

    pub fn output_sampling_rate(&self) -> usize {
        match self {
            Self::Plain(v) => v.output_sampling_rate(),
            Self::Bwe(v) => v.cfg.output_sampling_rate,
        }
    }

    /// `[B, 2, T, 64]` log-mel -> `[B, 2, samples]` in [-1, 1].
    pub fn forward(&self, mel: &Tensor) -> crate::Result<Tensor> {
        match self {
            Self::Plain(v) => v.forward(mel),
            Self::Bwe(v) => v.forward(mel),
        }
    }

    pub fn dtype_hint(&self) -> DType {
        match self {
            Self::Plain(v) => v.conv_pre.weight().dtype(),
            Self::Bwe(v) => v.vocoder.conv_pre.weight().dtype(),
        }
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

    fn tiny_hifigan() -> Value {
        json!({"resblock": "1", "stereo": true, "upsample_initial_channel": 8,
            "upsample_rates": [2, 2], "upsample_kernel_sizes": [4, 4], "resblock_kernel_sizes": [3],
            "resblock_dilation_sizes": [[1, 3, 5]]})
    }

    fn build(cfg: &VocoderModelConfig, seed: u64) -> crate::Result<VocoderModel> {
        let w = random_weights(seed, DType::F32, "", |vb| {
            VocoderModel::new(cfg, vb).map_err(Error::from)
        })?;
        let sd = Arc::new(StateDict::from_tensors(w));
        Ok(VocoderModel::new(
            cfg,
            sd.var_builder(DType::F32, &Device::Cpu),
        )?)
    }

    #[test]
    fn configs_and_shapes() -> crate::Result<()> {
        let base = tiny_hifigan();
        let cfg = VocoderModelConfig::from_checkpoint_config(&json!({ "vocoder": base.clone() }))?;
        let voc = build(&cfg, 4)?;
        let wav = voc.forward(&Tensor::zeros((1, 2, 5, 64), DType::F32, &Device::Cpu)?)?;
        assert_eq!(wav.dims(), &[1, 2, 20]);
        let bad = voc.forward(&Tensor::zeros((1, 2, 5, 32), DType::F32, &Device::Cpu)?);
        assert!(matches!(bad, Err(Error::TensorShape { .. })));
        // the plain path asserts HiFi-GAN, like the reference
        let mut amp = base.clone();
        amp["resblock"] = json!("AMP1");
        assert!(matches!(
            VocoderModelConfig::from_checkpoint_config(&json!({ "vocoder": amp })),
            Err(Error::UnsupportedConfig { .. })
        ));
        let mut two = base.clone();
        two["resblock_dilation_sizes"] = json!([[1, 3]]);
        assert!(matches!(
            VocoderModelConfig::from_checkpoint_config(&json!({ "vocoder": two })),
            Err(Error::InvalidConfig(_))
        ));
        // a BWE section whose halves are not AMP1 + snakebeta is refused
        let bwe = json!({"vocoder": {"vocoder": base, "bwe": {}}});
        assert!(matches!(
            VocoderModelConfig::from_checkpoint_config(&bwe),
            Err(Error::UnsupportedConfig { .. })
        ));
        Ok(())
    }

    #[test]
    fn bwe_model_triples_the_rate() -> crate::Result<()> {
        let amp = |ch: usize, rates: Vec<usize>, kernels: Vec<usize>| {
            json!({"resblock": "AMP1", "stereo": true, "activation": "snakebeta",
                "upsample_initial_channel": ch, "upsample_rates": rates,
                "upsample_kernel_sizes": kernels, "resblock_kernel_sizes": [3],
                "resblock_dilation_sizes": [[1, 3, 5]], "use_bias_at_final": false,
                "use_tanh_at_final": false})
        };
        let mut bwe = amp(8, vec![3, 2], vec![5, 4]);
        for (k, v) in [
            ("n_fft", 16),
            ("hop_length", 2),
            ("num_mels", 64),
            ("input_sampling_rate", 16000),
            ("output_sampling_rate", 48000),
        ] {
            bwe[k] = json!(v);
        }
        let cfg = VocoderModelConfig::from_checkpoint_config(
            &json!({"vocoder": {"vocoder": amp(8, vec![2, 2], vec![4, 4]), "bwe": bwe}}),
        )?;
        assert_eq!(cfg.output_sampling_rate(), 48000);
        let voc = build(&cfg, 5)?;
        let mel = Tensor::randn(0f32, 1.0, (1, 2, 5, 64), &Device::Cpu)?;
        let wav = voc.forward(&mel)?;
        // 5 frames x 4 = 20 samples at 16 kHz -> 60 at 48 kHz
        assert_eq!(wav.dims(), &[1, 2, 60]);
        let max = wav.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(max <= 1.0);
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
        let cfg = VocoderModelConfig::from_checkpoint_config(
            &json!({"vocoder": {"resblock": "1", "stereo": true,
            "upsample_initial_channel": 32, "upsample_rates": [6, 5, 2, 2, 2],
            "upsample_kernel_sizes": [16, 15, 8, 4, 4], "resblock_kernel_sizes": [3],
            "resblock_dilation_sizes": [[1, 3, 5]]}}),
        )?;
        let w = random_weights(7, DType::F32, "", |vb| {
            VocoderModel::new(&cfg, vb).map_err(Error::from)
        })?;
        let voc = VocoderModel::new(
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

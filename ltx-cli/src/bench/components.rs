//! The benchmarks of the convolutional and audio components and of Gemma: their input files
//! (bf16-rounded random weights at released widths, fixture format) and their Rust workers.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor};
use ltx_core::device::DTypeChoice;
use ltx_core::loader::synthetic::{random_weights, save_safetensors, SplitMix64};
use ltx_core::loader::SafetensorsFiles;
use ltx_core::model::video_vae::presets::{released_vae_config, VaeLayout};
use ltx_core::model::video_vae::{
    vae_decoder_keys_filter, DecodeInputs, VideoDecoder, VideoVaeConfig,
};
use serde_json::{json, Value};

use super::{
    compare_sides, input_dict, read_input, require_cpu_f32, threads, time_runs, value_name,
    workdir, Bench, CommonArgs, Side, WorkerArgs,
};

/// The released vocoders.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum VocoderVariant {
    Hifigan,
    Bwe,
}

/// The latent upsampler kinds.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpsamplerVariant {
    Spatial,
    Temporal,
    Rational,
}

#[derive(clap::Args)]
pub struct VocoderArgs {
    /// Mel frames (100 per second of audio).
    #[arg(long, default_value_t = 101)]
    frames: usize,
    /// `hifigan` (LTX-2, 24 kHz) or `bwe` (LTX-2.3: BigVGAN v2 at 16 kHz + bandwidth extension
    /// to 48 kHz).
    #[arg(long, value_enum, default_value_t = VocoderVariant::Hifigan)]
    variant: VocoderVariant,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(clap::Args)]
pub struct TextEncoderArgs {
    /// Hidden width (the 12B model: 3840).
    #[arg(long, default_value_t = 640)]
    hidden: usize,
    /// Decoder layers (the 12B model: 48; every 6th is global).
    #[arg(long, default_value_t = 12)]
    layers: usize,
    /// Prompt tokens (the pipelines pad to 1024).
    #[arg(long, default_value_t = 256)]
    tokens: usize,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(clap::Args)]
pub struct UpsamplerArgs {
    /// spatial (x2), temporal (x2) or rational (x1.5).
    #[arg(long, value_enum, default_value_t = UpsamplerVariant::Spatial)]
    variant: UpsamplerVariant,
    /// Middle width (the released x2 files: 1024).
    #[arg(long, default_value_t = 1024)]
    mid_channels: usize,
    /// Latent frames.
    #[arg(long, default_value_t = 4)]
    frames: usize,
    /// Latent height (pixels / 32).
    #[arg(long, default_value_t = 16)]
    height: usize,
    /// Latent width (pixels / 32).
    #[arg(long, default_value_t = 24)]
    width: usize,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(clap::Args)]
pub struct VaeDecodeArgs {
    /// Released widths (528M-parameter decoder) instead of a narrow one.
    #[arg(long)]
    full_size: bool,
    /// Released layout: ltx2 (19B) or ltx23 (22B).
    #[arg(long, default_value = "ltx2", value_parser = parse_layout)]
    layout: VaeLayout,
    /// Output frames (1 + 8k).
    #[arg(long, default_value_t = 9)]
    frames: usize,
    /// Output height in pixels (multiple of 32).
    #[arg(long, default_value_t = 256)]
    height: usize,
    /// Output width in pixels (multiple of 32).
    #[arg(long, default_value_t = 256)]
    width: usize,
    #[command(flatten)]
    common: CommonArgs,
}

fn parse_layout(s: &str) -> Result<VaeLayout, String> {
    s.parse().map_err(|e: ltx_core::Error| e.to_string())
}

pub(super) fn vocoder(
    args: VocoderArgs,
    device: &Device,
    dtype: Option<DTypeChoice>,
) -> Result<()> {
    use ltx_core::model::audio_vae::vocoder::{VocoderModel, VocoderModelConfig};
    require_cpu_f32("vocoder", device, dtype)?;
    if args.frames == 0 {
        bail!("--frames must be positive");
    }
    // the released vocoders (LTX-ARCH.md 2.6)
    let hifigan = json!({"resblock": "1", "stereo": true, "upsample_initial_channel": 1024,
        "upsample_rates": [6, 5, 2, 2, 2], "upsample_kernel_sizes": [16, 15, 8, 4, 4],
        "resblock_kernel_sizes": [3, 7, 11], "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
        "output_sampling_rate": 24000});
    let amp = |ch: usize, rates: serde_json::Value, kernels: serde_json::Value| {
        json!({"resblock": "AMP1", "stereo": true, "activation": "snakebeta",
            "upsample_initial_channel": ch, "upsample_rates": rates, "upsample_kernel_sizes": kernels,
            "resblock_kernel_sizes": [3, 7, 11],
            "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
            "use_tanh_at_final": false, "use_bias_at_final": false})
    };
    let (config, hop, rate) = match args.variant {
        VocoderVariant::Hifigan => (json!({ "vocoder": hifigan }), 240, 24),
        VocoderVariant::Bwe => {
            let mut bwe = amp(512, json!([6, 5, 2, 2, 2]), json!([12, 11, 4, 4, 4]));
            for (k, v) in [
                ("n_fft", 512),
                ("hop_length", 80),
                ("num_mels", 64),
                ("input_sampling_rate", 16000),
                ("output_sampling_rate", 48000),
            ] {
                bwe[k] = json!(v);
            }
            let voc = amp(1536, json!([5, 2, 2, 2, 2, 2]), json!([11, 4, 4, 4, 4, 4]));
            (json!({"vocoder": {"vocoder": voc, "bwe": bwe}}), 480, 48)
        }
    };
    let cfg = VocoderModelConfig::from_checkpoint_config(&config)?;
    let file = workdir(&args.common)?.join(format!(
        "vocoder_{}_{}.safetensors",
        value_name(args.variant),
        args.frames
    ));
    if !file.exists() {
        eprintln!("writing weights and input to {}", file.display());
        let mut tensors = random_weights(0, DType::BF16, "vocoder.", |vb| {
            VocoderModel::new(&cfg, vb).map_err(ltx_core::Error::from)
        })?;
        let mut rng = SplitMix64::new(3);
        let n = 2 * args.frames * 64;
        let mel: Vec<f32> = (0..n).map(|_| rng.normal() - 4.0).collect();
        tensors.insert(
            "input.mel".into(),
            Tensor::from_vec(mel, (1, 2, args.frames, 64), &Device::Cpu)?,
        );
        let metadata = HashMap::from([
            ("component".to_string(), "vocoder".to_string()),
            ("config".to_string(), config.to_string()),
            ("call".to_string(), "{}".to_string()),
        ]);
        save_safetensors(&file, &tensors, metadata)?;
    }
    println!(
        "vocoder {} (released width) mel=[1, 2, {}, 64] -> {} samples at {rate} kHz, f32 cpu threads={}",
        value_name(args.variant),
        args.frames,
        args.frames * hop,
        threads(&args.common)
    );
    compare_sides(
        Bench::Vocoder,
        &file,
        &args.common,
        ("bench_component.py", Side::CPU_F32),
    )
}

pub(super) fn text_encoder(
    args: TextEncoderArgs,
    device: &Device,
    dtype: Option<DTypeChoice>,
) -> Result<()> {
    use ltx_core::text_encoders::gemma::{Gemma3TextConfig, Gemma3TextModel};
    require_cpu_f32("text-encoder", device, dtype)?;
    if args.hidden % 64 != 0 || args.hidden == 0 || args.layers == 0 || args.tokens == 0 {
        bail!("--hidden must be a positive multiple of 64; --layers and --tokens positive");
    }
    // the 12B shape scaled down: 64-wide heads, half as many key/value heads, 4x MLP
    let heads = args.hidden / 64;
    let config = json!({"text_config": {
        "vocab_size": 8192, "hidden_size": args.hidden, "intermediate_size": 4 * args.hidden,
        "num_hidden_layers": args.layers, "num_attention_heads": heads,
        "num_key_value_heads": (heads / 2).max(1), "head_dim": 64, "query_pre_attn_scalar": 64,
        "sliding_window": 64
    }});
    let cfg = Gemma3TextConfig::from_json(&config)?;
    let name = format!(
        "text_encoder_{}x{}_{}.safetensors",
        args.hidden, args.layers, args.tokens
    );
    let file = workdir(&args.common)?.join(name);
    if !file.exists() {
        eprintln!("writing weights and input to {}", file.display());
        let mut tensors = random_weights(0, DType::BF16, "language_model.model.", |vb| {
            Gemma3TextModel::new(&cfg, vb).map_err(ltx_core::Error::from)
        })?;
        // a left-padded prompt: the first quarter is padding
        let t = args.tokens;
        let pad = t / 4;
        let mut rng = SplitMix64::new(2);
        let ids: Vec<i64> = (0..t)
            .map(|i| {
                if i < pad {
                    0
                } else {
                    1 + (rng.next_u64() % 8191) as i64
                }
            })
            .collect();
        let mask: Vec<i64> = (0..t).map(|i| (i >= pad) as i64).collect();
        tensors.insert(
            "input.input_ids".into(),
            Tensor::from_vec(ids, (1, t), &Device::Cpu)?,
        );
        tensors.insert(
            "input.attention_mask".into(),
            Tensor::from_vec(mask, (1, t), &Device::Cpu)?,
        );
        let metadata = HashMap::from([
            ("component".to_string(), "gemma_text_encoder".to_string()),
            ("config".to_string(), config.to_string()),
            ("call".to_string(), "{}".to_string()),
        ]);
        save_safetensors(&file, &tensors, metadata)?;
    }
    println!(
        "text-encoder hidden={} layers={} heads={} tokens={} f32 cpu threads={}",
        args.hidden,
        args.layers,
        heads,
        args.tokens,
        threads(&args.common)
    );
    compare_sides(
        Bench::TextEncoder,
        &file,
        &args.common,
        ("bench_component.py", Side::CPU_F32),
    )
}

pub(super) fn upsampler(
    args: UpsamplerArgs,
    device: &Device,
    dtype: Option<DTypeChoice>,
) -> Result<()> {
    use ltx_core::model::upsampler::{LatentUpsampler, LatentUpsamplerConfig};
    require_cpu_f32("upsampler", device, dtype)?;
    let mut config = json!({
        "in_channels": 128, "mid_channels": args.mid_channels, "num_blocks_per_stage": 4, "dims": 3,
        "spatial_upsample": true, "temporal_upsample": false, "spatial_scale": 2.0,
        "rational_resampler": false
    });
    match args.variant {
        UpsamplerVariant::Spatial => {}
        UpsamplerVariant::Temporal => {
            config["spatial_upsample"] = json!(false);
            config["temporal_upsample"] = json!(true);
        }
        UpsamplerVariant::Rational => {
            config["rational_resampler"] = json!(true);
            config["spatial_scale"] = json!(1.5);
        }
    }
    let cfg = LatentUpsamplerConfig::from_checkpoint_config(&config)?;
    if args.frames == 0 || args.height == 0 || args.width == 0 {
        bail!("--frames/--height/--width must be positive");
    }
    let shape = [1, 128, args.frames, args.height, args.width];
    let name = format!(
        "upsampler_{}_{}_{}x{}x{}.safetensors",
        value_name(args.variant),
        args.mid_channels,
        args.frames,
        args.height,
        args.width
    );
    let file = workdir(&args.common)?.join(name);
    if !file.exists() {
        eprintln!("writing weights and input to {}", file.display());
        let mut tensors = random_weights(0, DType::BF16, "", |vb| LatentUpsampler::new(&cfg, vb))?;
        let mut rng = SplitMix64::new(1);
        let n: usize = shape.iter().product();
        let latent: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
        tensors.insert(
            "input.latent".into(),
            Tensor::from_vec(latent, shape.as_slice(), &Device::Cpu)?,
        );
        let metadata = HashMap::from([
            ("component".to_string(), "latent_upsampler".to_string()),
            ("config".to_string(), config.to_string()),
            ("call".to_string(), json!({"op": "forward"}).to_string()),
        ]);
        save_safetensors(&file, &tensors, metadata)?;
    }
    println!(
        "upsampler variant={} mid_channels={} latent={:?} f32 cpu threads={}",
        value_name(args.variant),
        args.mid_channels,
        shape,
        threads(&args.common)
    );
    compare_sides(
        Bench::Upsampler,
        &file,
        &args.common,
        ("bench_component.py", Side::CPU_F32),
    )
}

/// A narrow variant of a released layout (same blocks, 1/8 of the widths) for quick runs.
fn vae_config(layout: VaeLayout, full_size: bool) -> Value {
    let mut cfg = released_vae_config(layout);
    if !full_size {
        cfg["vae"]["decoder_base_channels"] = json!(16);
    }
    cfg
}

pub(super) fn vae_decode(
    args: VaeDecodeArgs,
    device: &Device,
    dtype: Option<DTypeChoice>,
) -> Result<()> {
    require_cpu_f32("vae-decode", device, dtype)?;
    if args.frames == 0 || (args.frames - 1) % 8 != 0 {
        bail!("--frames must be 1 + 8k, got {}", args.frames);
    }
    if args.height == 0 || args.width == 0 || args.height % 32 != 0 || args.width % 32 != 0 {
        bail!(
            "--height/--width must be positive multiples of 32, got {}x{}",
            args.height,
            args.width
        );
    }
    let latent_shape = [
        1,
        128,
        (args.frames - 1) / 8 + 1,
        args.height / 32,
        args.width / 32,
    ];
    let workdir = workdir(&args.common)?;
    let name = format!(
        "vae_decode_{:?}_{}_{}x{}x{}.safetensors",
        args.layout,
        if args.full_size { "full" } else { "narrow" },
        latent_shape[2],
        latent_shape[3],
        latent_shape[4]
    )
    .to_lowercase();
    let file = workdir.join(name);
    if !file.exists() {
        eprintln!("writing weights and input to {}", file.display());
        write_vae_decode_input(
            &file,
            &vae_config(args.layout, args.full_size),
            &latent_shape,
        )?;
    }
    println!(
        "vae-decode layout={:?} full_size={} latent={:?} -> video=[1, 3, {}, {}, {}] f32 cpu threads={}",
        args.layout,
        args.full_size,
        latent_shape,
        args.frames,
        args.height,
        args.width,
        threads(&args.common)
    );
    compare_sides(
        Bench::VaeDecode,
        &file,
        &args.common,
        ("bench_vae_decode.py", Side::CPU_F32),
    )
}

/// Writes a fixture-format file: bf16-rounded random decoder weights (checkpoint keys), the
/// config, and a standard-normal `input.latent`.
fn write_vae_decode_input(path: &Path, config: &Value, latent_shape: &[usize; 5]) -> Result<()> {
    let cfg = VideoVaeConfig::from_checkpoint_config(config)?;
    let mut tensors = random_weights(0, DType::BF16, "vae.decoder.", |vb| {
        VideoDecoder::new(&cfg, vb.clone())
    })?;
    // The statistics are shared with the encoder and live outside `vae.decoder.`.
    let stats: Vec<String> = tensors
        .keys()
        .filter(|k| k.starts_with("vae.decoder.per_channel_statistics."))
        .cloned()
        .collect();
    for k in stats {
        let t = tensors.remove(&k).expect("listed");
        tensors.insert(k.replace("vae.decoder.", "vae."), t);
    }
    let mut rng = SplitMix64::new(1);
    let n: usize = latent_shape.iter().product();
    let latent: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
    tensors.insert(
        "input.latent".into(),
        Tensor::from_vec(latent, latent_shape.as_slice(), &Device::Cpu)?,
    );
    let metadata = HashMap::from([
        ("component".to_string(), "video_decoder".to_string()),
        ("config".to_string(), config.to_string()),
        (
            "call".to_string(),
            json!({"timestep": null, "tiling": null}).to_string(),
        ),
    ]);
    save_safetensors(path, &tensors, metadata)?;
    Ok(())
}

pub(super) fn worker_upsampler(args: &WorkerArgs, device: &Device, dtype: DType) -> Result<()> {
    use ltx_core::model::upsampler::{
        latent_upsampler_keys, LatentUpsampler, LatentUpsamplerConfig,
    };
    let files = SafetensorsFiles::open(&[&args.file])?;
    let cfg = LatentUpsamplerConfig::from_checkpoint_config(&files.config()?)?;
    let sd = std::sync::Arc::new(files.state_dict(&latent_upsampler_keys())?);
    let model = LatentUpsampler::new(&cfg, sd.var_builder(dtype, device))?;
    let latent = read_input(&files, "latent", dtype, device)?;
    drop((sd, files));
    time_runs(args, device, || {
        drop(model.forward(&latent)?);
        Ok(())
    })
}

pub(super) fn worker_text_encoder(args: &WorkerArgs, device: &Device, dtype: DType) -> Result<()> {
    use ltx_core::text_encoders::gemma::{gemma_llm_key_ops, Gemma3TextConfig, Gemma3TextModel};
    let files = SafetensorsFiles::open(&[&args.file])?;
    let cfg = Gemma3TextConfig::from_json(&files.config()?)?;
    let sd = std::sync::Arc::new(files.state_dict(&gemma_llm_key_ops())?);
    let model = Gemma3TextModel::new(&cfg, sd.var_builder(dtype, device))?;
    let io = input_dict(&files)?;
    let ids = io.raw_tensor("input_ids", device)?;
    let mask = io.raw_tensor("attention_mask", device)?;
    drop((io, sd, files));
    time_runs(args, device, || {
        drop(model.forward(&ids, &mask)?);
        Ok(())
    })
}

pub(super) fn worker_vae_decode(args: &WorkerArgs, device: &Device, dtype: DType) -> Result<()> {
    let files = SafetensorsFiles::open(&[&args.file])?;
    let cfg = VideoVaeConfig::from_checkpoint_config(&files.config()?)?;
    let sd = std::sync::Arc::new(files.state_dict(&vae_decoder_keys_filter())?);
    let decoder = VideoDecoder::new(&cfg, sd.var_builder(dtype, device))?;
    let latent = read_input(&files, "latent", dtype, device)?;
    // The model owns its weights now: unmap the file before measuring.
    drop((sd, files));
    time_runs(args, device, || {
        drop(decoder.forward(&latent, DecodeInputs::default())?);
        Ok(())
    })
}

pub(super) fn worker_vocoder(args: &WorkerArgs, device: &Device, dtype: DType) -> Result<()> {
    use ltx_core::model::audio_vae::vocoder::{
        vocoder_keys_filter, VocoderModel, VocoderModelConfig,
    };
    let files = SafetensorsFiles::open(&[&args.file])?;
    let cfg = VocoderModelConfig::from_checkpoint_config(&files.config()?)?;
    let sd = std::sync::Arc::new(files.state_dict(&vocoder_keys_filter())?);
    let vocoder = VocoderModel::new(&cfg, sd.var_builder(dtype, device))?;
    let mel = read_input(&files, "mel", dtype, device)?;
    drop((sd, files));
    time_runs(args, device, || {
        drop(vocoder.forward(&mel)?);
        Ok(())
    })
}

//! The generation commands: `ltx generate` / `ltx distilled` (two-stage distilled), `ltx
//! one-stage`, `ltx two-stage`; from local files or, with no checkpoint given, the built-in tiny
//! model.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use indicatif::{ProgressBar, ProgressStyle};
use ltx_core::device::DTypeChoice;
use ltx_core::model::audio_vae::vocoder::VocoderModelConfig;
use ltx_core::model::video_vae::TilingConfig;
use ltx_pipelines::a2vid_two_stage::{A2VidTwoStagePipeline, AudioInput};
use ltx_pipelines::distilled::{
    DistilledPipeline, GenerationRequest, ImageConditioningInput, ProgressEvent,
};
use ltx_pipelines::ic_lora::{ICLoraPipeline, IcLoraRequest, VideoConditioningInput};
use ltx_pipelines::media::video::Mp4Writer;
use ltx_pipelines::retake::{RetakeMode, RetakePipeline, RetakeRequest};
use ltx_pipelines::ti2vid_one_stage::{GuidanceRequest, TI2VidOneStagePipeline};
use ltx_pipelines::ti2vid_two_stages::TI2VidTwoStagesPipeline;
use ltx_pipelines::tiny::{default_cache_dir, ensure_tiny_model};
use ltx_pipelines::utils::constants::{
    detect_params_from_path, DEFAULT_IMAGE_CRF, DEFAULT_LORA_STRENGTH, DEFAULT_NEGATIVE_PROMPT,
};
use ltx_pipelines::utils::model_ledger::{LoraSpec, ModelLedger};
use ltx_pipelines::utils::stages::PromptEnhancement;

#[derive(clap::Args, Debug)]
pub struct CommonArgs {
    /// Text prompt describing the video.
    #[arg(long)]
    prompt: String,
    /// Output MP4 (H.264 + AAC); written to a temporary file and renamed at the end.
    #[arg(long, default_value = "output.mp4")]
    output_path: PathBuf,
    #[command(flatten)]
    weights: WeightArgs,
    #[command(flatten)]
    vae: VaeBackendArgs,
    /// Random seed (default: the model's preset).
    #[arg(long)]
    seed: Option<u64>,
    /// Height in pixels, a multiple of 64 (default: the model's preset; 512 for the tiny model).
    #[arg(long)]
    height: Option<usize>,
    /// Width in pixels, a multiple of 64 (default: the model's preset; 768 for the tiny model).
    #[arg(long)]
    width: Option<usize>,
    /// Number of frames, 8k + 1 (default: the model's preset; 121 for the tiny model).
    #[arg(long)]
    num_frames: Option<usize>,
    /// Frames per second (default: the model's preset).
    #[arg(long)]
    frame_rate: Option<f64>,
    /// Image conditioning: PATH FRAME_IDX STRENGTH [CRF] (repeatable).
    #[arg(long = "image", num_args = 3..=4, value_names = ["PATH", "FRAME_IDX", "STRENGTH", "CRF"], action = clap::ArgAction::Append)]
    images: Vec<String>,
    #[command(flatten)]
    run: RunArgs,
}

/// LoRAs, prompt enhancement, decoding and overwriting: what every generation command takes.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// LoRA: PATH [STRENGTH] (repeatable).
    #[arg(long = "lora", num_args = 1..=2, value_names = ["PATH", "STRENGTH"], action = clap::ArgAction::Append)]
    loras: Vec<String>,
    #[command(flatten)]
    enhance: EnhanceArgs,
    /// Decode the video in tiles (512 px / 64 frames, the reference's defaults) to bound memory.
    #[arg(long)]
    tiled_decode: bool,
    /// Overwrite an existing output file.
    #[arg(long)]
    force: bool,
}

/// Where the weights come from: local files, the Hugging Face Hub, or the built-in tiny model.
#[derive(clap::Args, Debug)]
pub struct WeightArgs {
    /// LTX-2 / LTX-2.3 checkpoint (.safetensors). Without it (and without --model) the built-in
    /// tiny model runs (noise-like output; every stage exercised).
    #[arg(long, alias = "distilled-checkpoint-path")]
    checkpoint_path: Option<PathBuf>,
    /// Take the weights from the Hugging Face Hub: `Lightricks/LTX-2` or `Lightricks/LTX-2.3`
    /// (downloaded once into the HF cache; files given by path take precedence).
    #[arg(long, value_name = "REPO")]
    model: Option<String>,
    /// Gemma text encoder repository on the Hub (default with --model:
    /// google/gemma-3-12b-it-qat-q4_0-unquantized).
    #[arg(long, value_name = "REPO")]
    gemma: Option<String>,
    /// Resolve Hub files from the local cache only (also `HF_HUB_OFFLINE=1`).
    #[arg(long)]
    offline: bool,
    /// Folder with the Gemma-3 text encoder (tokenizer.json + safetensors).
    #[arg(long)]
    gemma_root: Option<PathBuf>,
    /// Spatial x2 latent upsampler (.safetensors); two-stage pipelines.
    #[arg(long)]
    spatial_upsampler_path: Option<PathBuf>,
    /// Where the built-in tiny model is cached (default: $LTX_CACHE, $XDG_CACHE_HOME/ltx-rs or
    /// ~/.cache/ltx-rs).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

/// The resolved weight files of a run.
struct Weights {
    checkpoint: PathBuf,
    gemma_root: PathBuf,
    upsampler: Option<PathBuf>,
    /// The built-in tiny model stands in.
    tiny: bool,
    /// The distilled LoRA from the Hub repo, when one was asked for.
    hub_distilled_lora: Option<PathBuf>,
}

/// Hub files fill whatever was not given as a local path; with no checkpoint at all the tiny
/// model is used (built once into the cache).
fn resolve_weights(
    w: &WeightArgs,
    variant: crate::hub::Variant,
    need_upsampler: bool,
    want_hub_lora: bool,
) -> Result<Weights> {
    let mut checkpoint_path = w.checkpoint_path.clone();
    let mut gemma_path = w.gemma_root.clone();
    let mut upsampler_path = w.spatial_upsampler_path.clone();
    let mut hub_distilled_lora = None;
    if w.model.is_some() || w.gemma.is_some() {
        let offline = w.offline || crate::hub::offline_from_env();
        let hub = crate::hub::Hub::new(None, offline)?;
        if let Some(repo) = &w.model {
            let files = crate::hub::repo_files(repo, variant)?;
            if checkpoint_path.is_none() {
                checkpoint_path = Some(hub.file(repo, files.checkpoint)?);
            }
            if upsampler_path.is_none() && need_upsampler {
                upsampler_path = Some(hub.file(repo, files.spatial_upsampler)?);
            }
            if want_hub_lora {
                hub_distilled_lora = Some(hub.file(repo, files.distilled_lora)?);
            }
        }
        if gemma_path.is_none() {
            let repo = w.gemma.as_deref().unwrap_or(crate::hub::DEFAULT_GEMMA_REPO);
            gemma_path = Some(hub.gemma_root(repo)?);
        }
    }
    match checkpoint_path {
        Some(checkpoint) => {
            let gemma_root = gemma_path
                .context("--gemma-root (or --gemma REPO) is required with --checkpoint-path")?;
            let upsampler = match (upsampler_path, need_upsampler) {
                (Some(p), _) => Some(p),
                (None, false) => None,
                (None, true) => {
                    bail!("--spatial-upsampler-path is required by the two-stage pipelines")
                }
            };
            Ok(Weights {
                checkpoint,
                gemma_root,
                upsampler,
                tiny: false,
                hub_distilled_lora,
            })
        }
        None => {
            if w.gemma_root.is_some() || w.spatial_upsampler_path.is_some() {
                bail!("--gemma-root / --spatial-upsampler-path need --checkpoint-path");
            }
            let cache = w.cache_dir.clone().unwrap_or_else(default_cache_dir);
            eprintln!(
                "no --checkpoint-path: using the built-in tiny model (noise-like output) from {}",
                cache.display()
            );
            let t = ensure_tiny_model(&cache)?;
            Ok(Weights {
                checkpoint: t.checkpoint,
                gemma_root: t.gemma_root,
                upsampler: Some(t.spatial_upsampler),
                tiny: true,
                hub_distilled_lora: None,
            })
        }
    }
}

/// Which runtime decodes the video latents.
#[derive(clap::Args, Debug)]
pub struct VaeBackendArgs {
    /// `candle` (default) or `coreml`: decode with an exported Core ML package (macOS; see
    /// `ltx-coreml export`).
    #[arg(long, default_value = "candle", value_parser = ["candle", "coreml"])]
    vae_backend: String,
    /// The `video-decoder` package for `--vae-backend coreml`, exported for this output size.
    #[arg(long, value_name = "PACKAGE")]
    coreml_decoder: Option<PathBuf>,
    /// Core ML compute units: ALL, CPU_AND_NE, CPU_AND_GPU or CPU_ONLY.
    #[arg(long, default_value = "ALL")]
    coreml_compute_units: String,
}

/// Installs the Core ML decoder in the ledger when asked, after checking (before any work) that
/// it can decode the output's latent `[C, F', H', W']`.
fn apply_vae_backend(
    args: &VaeBackendArgs,
    ledger: &mut ModelLedger,
    latent: [usize; 4],
    tiled: bool,
) -> Result<()> {
    use ltx_core::model::video_vae::LatentVideoDecoder;
    if args.vae_backend == "candle" {
        if args.coreml_decoder.is_some() {
            bail!("--coreml-decoder needs --vae-backend coreml");
        }
        return Ok(());
    }
    if !cfg!(target_vendor = "apple") {
        bail!("--vae-backend coreml needs macOS (Core ML); use --vae-backend candle here");
    }
    let package = args
        .coreml_decoder
        .as_ref()
        .context("--vae-backend coreml needs --coreml-decoder PACKAGE")?;
    if tiled {
        bail!("--tiled-decode is not available with --vae-backend coreml (one fixed shape per package)");
    }
    let units: ltx_coreml::apple::ComputeUnits = args
        .coreml_compute_units
        .parse()
        .map_err(|e| anyhow::anyhow!("--coreml-compute-units: {e}"))?;
    let decoder =
        ltx_coreml::CoreMlVideoDecoder::new(package, units, &default_cache_dir().join("coreml"))?;
    decoder.check_latent_shape(latent)?;
    ledger.video_decoder_backend = Some(ltx_pipelines::utils::model_ledger::VideoDecoderBackend(
        std::sync::Arc::new(decoder),
    ));
    Ok(())
}

/// The video latent `[C, F', H', W']` of an output (the VAE's 8x time and 32x space factors).
fn output_latent(frames: usize, height: usize, width: usize) -> [usize; 4] {
    [128, (frames - 1) / 8 + 1, height / 32, width / 32]
}

/// `--image` values come flat; each group starts with a path (3 or 4 values).
fn parse_images(flat: &[String]) -> Result<Vec<ImageConditioningInput>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < flat.len() {
        if i + 3 > flat.len() {
            bail!("--image needs PATH FRAME_IDX STRENGTH [CRF]");
        }
        let frame_idx: usize = flat[i + 1]
            .parse()
            .with_context(|| format!("--image FRAME_IDX `{}`", flat[i + 1]))?;
        let strength: f64 = flat[i + 2]
            .parse()
            .with_context(|| format!("--image STRENGTH `{}`", flat[i + 2]))?;
        let mut crf = DEFAULT_IMAGE_CRF;
        let mut used = 3;
        if let Some(c) = flat.get(i + 3).and_then(|s| s.parse::<u32>().ok()) {
            crf = c;
            used = 4;
        }
        out.push(ImageConditioningInput {
            path: PathBuf::from(&flat[i]),
            frame_idx,
            strength,
            crf,
        });
        i += used;
    }
    Ok(out)
}

fn parse_loras(flat: &[String]) -> Result<Vec<LoraSpec>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < flat.len() {
        let mut strength = DEFAULT_LORA_STRENGTH;
        let mut used = 1;
        if let Some(s) = flat.get(i + 1).and_then(|s| s.parse::<f64>().ok()) {
            strength = s;
            used = 2;
        }
        out.push(LoraSpec {
            path: PathBuf::from(&flat[i]),
            strength,
        });
        i += used;
    }
    Ok(out)
}

/// Prompt enhancement by Gemma.
#[derive(clap::Args, Debug)]
pub struct EnhanceArgs {
    /// Let Gemma rewrite the prompt into a detailed one first (sampled with --seed).
    #[arg(long)]
    enhance_prompt: bool,
    /// Instructions for Gemma's rewrite (a text file; default: the built-in ones).
    #[arg(long, value_name = "FILE", requires = "enhance_prompt")]
    enhance_system_prompt: Option<PathBuf>,
}

/// `--enhance-prompt [--enhance-system-prompt FILE]`; the file is read now so a bad path fails
/// before any work.
fn enhancement(args: &EnhanceArgs) -> Result<Option<PromptEnhancement>> {
    if !args.enhance_prompt {
        return Ok(None);
    }
    let system_prompt = match args.enhance_system_prompt.as_deref() {
        None => None,
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("cannot read the system prompt `{}`", p.display()))?,
        ),
    };
    Ok(Some(PromptEnhancement {
        system_prompt,
        image: None,
    }))
}

/// Muxes the soundtrack and renames the MP4 into place.
fn finish_output(
    mut writer: Mp4Writer,
    bars: &mut Bars,
    audio: &ltx_core::types::Audio,
) -> Result<PathBuf> {
    bars.event(ProgressEvent::Stage {
        name: "mux",
        total: 0,
    });
    writer.write_audio(audio)?;
    let path = writer.finish()?;
    bars.finish();
    Ok(path)
}

fn check_output(path: &Path, force: bool) -> Result<()> {
    if path.exists() && !force {
        bail!("`{}` exists: pass --force to overwrite it", path.display());
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        bail!("the output folder `{}` does not exist", dir.display());
    }
    let probe = dir.join(format!(".ltx-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .with_context(|| format!("the output folder `{}` is not writable", dir.display()))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// Progress bars: one per stage, steps with it/s and ETA.
struct Bars {
    current: Option<ProgressBar>,
}

impl Bars {
    fn event(&mut self, e: ProgressEvent) {
        match e {
            ProgressEvent::Stage { name, total } => {
                if let Some(b) = self.current.take() {
                    b.finish();
                }
                let bar = if total > 0 {
                    let b = ProgressBar::new(total as u64);
                    b.set_style(
                        ProgressStyle::with_template(
                            "{msg:>18} [{bar:30}] {pos}/{len} {per_sec} eta {eta} ({elapsed})",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    b
                } else {
                    let b = ProgressBar::new_spinner();
                    b.set_style(
                        ProgressStyle::with_template("{msg:>18} {spinner} ({elapsed})")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    b.enable_steady_tick(std::time::Duration::from_millis(200));
                    b
                };
                bar.set_message(name);
                self.current = Some(bar);
            }
            ProgressEvent::Step { done, .. } => {
                if let Some(b) = &self.current {
                    b.set_position(done as u64);
                }
            }
            ProgressEvent::EnhancedPrompt(text) => {
                let line = format!("enhanced prompt: {text}");
                match &self.current {
                    Some(b) => b.suspend(|| eprintln!("{line}")),
                    None => eprintln!("{line}"),
                }
            }
        }
    }

    fn finish(&mut self) {
        if let Some(b) = self.current.take() {
            b.finish();
        }
    }
}

/// Guidance flags of the full-model pipelines (defaults: the checkpoint's preset).
#[derive(clap::Args, Debug)]
pub struct GuidanceArgs {
    /// Negative prompt (default: the reference's).
    #[arg(long)]
    negative_prompt: Option<String>,
    /// Denoising steps of stage 1 (default: the preset's, 40 for LTX-2).
    #[arg(long)]
    num_inference_steps: Option<usize>,
    #[arg(long)]
    video_cfg_guidance_scale: Option<f64>,
    #[arg(long)]
    video_stg_guidance_scale: Option<f64>,
    #[arg(long)]
    video_rescale_scale: Option<f64>,
    /// Audio-to-video modality guidance scale.
    #[arg(long)]
    a2v_guidance_scale: Option<f64>,
    #[arg(long)]
    video_skip_step: Option<usize>,
    /// Blocks whose video self-attention STG skips.
    #[arg(long, num_args = 0..)]
    video_stg_blocks: Option<Vec<usize>>,
    #[arg(long)]
    audio_cfg_guidance_scale: Option<f64>,
    #[arg(long)]
    audio_stg_guidance_scale: Option<f64>,
    #[arg(long)]
    audio_rescale_scale: Option<f64>,
    /// Video-to-audio modality guidance scale.
    #[arg(long)]
    v2a_guidance_scale: Option<f64>,
    #[arg(long)]
    audio_skip_step: Option<usize>,
    /// Blocks whose audio self-attention STG skips.
    #[arg(long, num_args = 0..)]
    audio_stg_blocks: Option<Vec<usize>>,
}

#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(clap::Args, Debug)]
pub struct OneStageArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    guidance: GuidanceArgs,
}

#[derive(clap::Args, Debug)]
pub struct TwoStageArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    guidance: GuidanceArgs,
    /// The distilled LoRA fused into stage 2: PATH [STRENGTH] (required with --checkpoint-path;
    /// the built-in tiny model stands in without one).
    #[arg(long, num_args = 1..=2, value_names = ["PATH", "STRENGTH"])]
    distilled_lora: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct A2VidArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    guidance: GuidanceArgs,
    /// The distilled LoRA fused into stage 2: PATH [STRENGTH].
    #[arg(long, num_args = 1..=2, value_names = ["PATH", "STRENGTH"])]
    distilled_lora: Vec<String>,
    /// The soundtrack (WAV, FLAC, MP3, AAC/M4A, or a video's audio track).
    #[arg(long)]
    audio_path: PathBuf,
    /// Where in the audio to start, in seconds.
    #[arg(long, default_value_t = 0.0)]
    audio_start_time: f64,
    /// At most this many seconds of audio.
    #[arg(long)]
    audio_max_duration: Option<f64>,
}

#[derive(clap::Args, Debug)]
pub struct IcLoraArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Control video (depth, pose, edges, ...; H.264 MP4) and its strength: PATH STRENGTH
    /// (repeatable). The IC-LoRA itself is given with --lora.
    #[arg(long, num_args = 2, value_names = ["PATH", "STRENGTH"], action = clap::ArgAction::Append, required = true)]
    video_conditioning: Vec<String>,
    /// Grayscale mask video scaling how much each region attends to the control video, and the
    /// overall strength: MASK_PATH STRENGTH.
    #[arg(long, num_args = 2, value_names = ["MASK_PATH", "STRENGTH"])]
    conditioning_attention_mask: Vec<String>,
    /// Attention strength to the control video without a mask, in [0, 1].
    #[arg(long, default_value_t = 1.0)]
    conditioning_attention_strength: f64,
    /// Skip the upsampling and refinement stage: the output is half the height and width.
    #[arg(long)]
    skip_stage_2: bool,
}

#[derive(clap::Args, Debug)]
pub struct RetakeArgs {
    /// The source video (H.264 MP4, 8k+1 frames, sides multiples of 32); its audio track, if any,
    /// is retaken too.
    #[arg(long)]
    video_path: PathBuf,
    /// Text prompt for the regenerated window.
    #[arg(long)]
    prompt: String,
    /// Start of the window to regenerate, in seconds.
    #[arg(long)]
    start_time: f64,
    /// End of the window (exclusive), in seconds.
    #[arg(long)]
    end_time: f64,
    /// Output MP4 (the source's size, frame count and rate).
    #[arg(long, default_value = "output.mp4")]
    output_path: PathBuf,
    #[command(flatten)]
    weights: WeightArgs,
    #[command(flatten)]
    vae: VaeBackendArgs,
    /// Random seed; a negative value picks one at random.
    #[arg(long, default_value_t = 42, allow_negative_numbers = true)]
    seed: i64,
    /// The checkpoint is the distilled model: its 8-step schedule, no guidance.
    #[arg(long)]
    distilled: bool,
    /// Keep the source video as it is (regenerate only the audio window).
    #[arg(long)]
    keep_video: bool,
    /// Keep the source audio as it is (regenerate only the video window).
    #[arg(long)]
    keep_audio: bool,
    #[command(flatten)]
    guidance: GuidanceArgs,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Args, Debug)]
pub struct TwoStageHqArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    guidance: GuidanceArgs,
    /// The distilled LoRA, fused into both stages (required with --checkpoint-path).
    #[arg(long, value_name = "PATH")]
    distilled_lora: Option<PathBuf>,
    #[arg(long, default_value_t = 0.25)]
    distilled_lora_strength_stage_1: f64,
    #[arg(long, default_value_t = 0.5)]
    distilled_lora_strength_stage_2: f64,
}

/// Which pipeline a command runs.
enum Kind {
    Distilled,
    OneStage(GuidanceArgs),
    /// The bool: keyframe interpolation (every image an appended keyframe).
    TwoStage(GuidanceArgs, Vec<String>, bool),
    TwoStageHq(GuidanceArgs, Option<PathBuf>, (f64, f64)),
    A2Vid(GuidanceArgs, Vec<String>, AudioInput),
    IcLora(IcLoraRequest),
}

impl Kind {
    fn two_stage(&self) -> bool {
        !matches!(self, Kind::OneStage(_))
    }
}

pub fn run(args: GenerateArgs, device: &Device, dtype: Option<DTypeChoice>) -> Result<()> {
    run_pipeline(args.common, Kind::Distilled, device, dtype)
}

pub fn run_one_stage(
    args: OneStageArgs,
    device: &Device,
    dtype: Option<DTypeChoice>,
) -> Result<()> {
    run_pipeline(args.common, Kind::OneStage(args.guidance), device, dtype)
}

pub fn run_keyframe_interpolation(
    args: TwoStageArgs,
    device: &Device,
    dtype: Option<DTypeChoice>,
) -> Result<()> {
    if args.common.images.is_empty() {
        bail!("keyframe interpolation needs at least one --image PATH FRAME_IDX STRENGTH");
    }
    run_pipeline(
        args.common,
        Kind::TwoStage(args.guidance, args.distilled_lora, true),
        device,
        dtype,
    )
}

pub fn run_a2vid(args: A2VidArgs, device: &Device, dtype: Option<DTypeChoice>) -> Result<()> {
    run_pipeline(
        args.common,
        Kind::A2Vid(
            args.guidance,
            args.distilled_lora,
            AudioInput {
                path: args.audio_path,
                start_time: args.audio_start_time,
                max_duration: args.audio_max_duration,
            },
        ),
        device,
        dtype,
    )
}

pub fn run_ic_lora(args: IcLoraArgs, device: &Device, dtype: Option<DTypeChoice>) -> Result<()> {
    let mut video_conditioning = Vec::new();
    for pair in args.video_conditioning.chunks(2) {
        let [path, strength] = pair else {
            bail!("--video-conditioning needs PATH STRENGTH");
        };
        video_conditioning.push(VideoConditioningInput {
            path: PathBuf::from(path),
            strength: strength
                .parse()
                .with_context(|| format!("--video-conditioning STRENGTH `{strength}`"))?,
        });
    }
    let (attention_mask, strength) = match args.conditioning_attention_mask.as_slice() {
        [] => (None, args.conditioning_attention_strength),
        [path, strength] => (
            Some(PathBuf::from(path)),
            strength
                .parse()
                .with_context(|| format!("--conditioning-attention-mask STRENGTH `{strength}`"))?,
        ),
        _ => bail!("--conditioning-attention-mask needs MASK_PATH STRENGTH"),
    };
    let ic = IcLoraRequest {
        video_conditioning,
        attention_mask,
        conditioning_attention_strength: strength,
        skip_stage_2: args.skip_stage_2,
    };
    ic.validate()?;
    run_pipeline(args.common, Kind::IcLora(ic), device, dtype)
}

pub fn run_two_stage_hq(
    args: TwoStageHqArgs,
    device: &Device,
    dtype: Option<DTypeChoice>,
) -> Result<()> {
    run_pipeline(
        args.common,
        Kind::TwoStageHq(
            args.guidance,
            args.distilled_lora,
            (
                args.distilled_lora_strength_stage_1,
                args.distilled_lora_strength_stage_2,
            ),
        ),
        device,
        dtype,
    )
}

pub fn run_two_stage(
    args: TwoStageArgs,
    device: &Device,
    dtype: Option<DTypeChoice>,
) -> Result<()> {
    run_pipeline(
        args.common,
        Kind::TwoStage(args.guidance, args.distilled_lora, false),
        device,
        dtype,
    )
}

pub fn run_retake(args: RetakeArgs, device: &Device, dtype: Option<DTypeChoice>) -> Result<()> {
    let start = Instant::now();
    check_output(&args.output_path, args.run.force)?;
    if args.keep_video && args.keep_audio {
        bail!("--keep-video and --keep-audio together leave nothing to regenerate");
    }
    let seed = u64::try_from(args.seed).unwrap_or_else(|_| {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(start.elapsed().as_nanos());
        // the reference draws from [0, 2^31)
        h.finish() % (1 << 31)
    });
    let req = RetakeRequest {
        video_path: args.video_path.clone(),
        prompt: args.prompt.clone(),
        start_time: args.start_time,
        end_time: args.end_time,
        seed,
        regenerate_video: !args.keep_video,
        regenerate_audio: !args.keep_audio,
        tiling: args.run.tiled_decode.then(TilingConfig::reference_default),
        enhance_prompt: enhancement(&args.run.enhance)?,
    };
    // the source's size, length and rate, and the window, are checked before any model loads
    let source = req.probe()?;
    let variant = if args.distilled {
        crate::hub::Variant::Distilled
    } else {
        crate::hub::Variant::Dev
    };
    let w = resolve_weights(&args.weights, variant, false, false)?;
    let mut ledger = ModelLedger::new(
        ltx_core::device::resolve_dtype(dtype, device),
        device.clone(),
        w.checkpoint.clone(),
        Some(w.gemma_root),
        None,
        parse_loras(&args.run.loras)?,
    )?;
    apply_vae_backend(
        &args.vae,
        &mut ledger,
        output_latent(source.frames, source.height, source.width),
        args.run.tiled_decode,
    )?;
    let mode = if args.distilled {
        RetakeMode::Distilled
    } else {
        let params = detect_params_from_path(&w.checkpoint)?;
        RetakeMode::Dev(guidance_request(args.guidance, &params, w.tiny))
    };
    if seed != args.seed as u64 {
        eprintln!("seed: {seed}");
    }
    let audio_rate = VocoderModelConfig::from_checkpoint_config(&ledger.config()?)?
        .output_sampling_rate() as u32;
    let mut writer = Mp4Writer::create(
        &args.output_path,
        source.width,
        source.height,
        source.fps,
        Some(audio_rate),
    )?;
    let mut bars = Bars { current: None };
    let mut frames = 0usize;
    let (audio, _) = RetakePipeline::new(ledger).run(
        &req,
        &mode,
        &mut |e| bars.event(e),
        &mut |chunk: candle_core::Tensor| {
            frames += chunk.dim(0)?;
            writer.write_frames(&chunk)
        },
    )?;
    let path = finish_output(writer, &mut bars, &audio)?;
    eprintln!(
        "wrote {} ({frames} frames {}x{} at {:.3} fps; {:.2}-{:.2} s regenerated) in {:.1} s",
        path.display(),
        source.width,
        source.height,
        source.fps,
        req.start_time,
        req.end_time,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn guidance_request(
    g: GuidanceArgs,
    params: &ltx_pipelines::utils::constants::PipelineParams,
    tiny: bool,
) -> GuidanceRequest {
    let mut video = params.video_guider_params.clone();
    let mut audio = params.audio_guider_params.clone();
    if tiny {
        // the tiny transformer has two blocks: perturb the last, as the presets do at full size
        video.stg_blocks = Some(vec![1]);
        audio.stg_blocks = Some(vec![1]);
    }
    let set = |t: &mut f64, v: Option<f64>| {
        if let Some(v) = v {
            *t = v;
        }
    };
    set(&mut video.cfg_scale, g.video_cfg_guidance_scale);
    set(&mut video.stg_scale, g.video_stg_guidance_scale);
    set(&mut video.rescale_scale, g.video_rescale_scale);
    set(&mut video.modality_scale, g.a2v_guidance_scale);
    set(&mut audio.cfg_scale, g.audio_cfg_guidance_scale);
    set(&mut audio.stg_scale, g.audio_stg_guidance_scale);
    set(&mut audio.rescale_scale, g.audio_rescale_scale);
    set(&mut audio.modality_scale, g.v2a_guidance_scale);
    if let Some(s) = g.video_skip_step {
        video.skip_step = s;
    }
    if let Some(s) = g.audio_skip_step {
        audio.skip_step = s;
    }
    if let Some(b) = g.video_stg_blocks {
        video.stg_blocks = Some(b);
    }
    if let Some(b) = g.audio_stg_blocks {
        audio.stg_blocks = Some(b);
    }
    GuidanceRequest {
        negative_prompt: g
            .negative_prompt
            .unwrap_or_else(|| DEFAULT_NEGATIVE_PROMPT.to_string()),
        num_inference_steps: g.num_inference_steps.unwrap_or(params.num_inference_steps),
        video_guider: video,
        audio_guider: audio,
    }
}

fn run_pipeline(
    args: CommonArgs,
    mut kind: Kind,
    device: &Device,
    dtype: Option<DTypeChoice>,
) -> Result<()> {
    let start = Instant::now();
    check_output(&args.output_path, args.run.force)?;
    let images = parse_images(&args.images)?;
    let loras = parse_loras(&args.run.loras)?;
    let enhance_prompt = enhancement(&args.run.enhance)?;
    let dtype = ltx_core::device::resolve_dtype(dtype, device);
    let two_stage = kind.two_stage();
    // what can be checked without the model, before anything is loaded or generated
    if let Some(n) = args.num_frames {
        ltx_pipelines::utils::helpers::assert_num_frames(n)?;
    }
    if let (Some(h), Some(w)) = (args.height, args.width) {
        ltx_pipelines::utils::helpers::assert_resolution(h, w, two_stage)?;
    }

    let variant = match kind {
        Kind::Distilled | Kind::IcLora(_) => crate::hub::Variant::Distilled,
        _ => crate::hub::Variant::Dev,
    };
    let want_hub_lora = match &kind {
        Kind::TwoStage(_, l, _) | Kind::A2Vid(_, l, _) => l.is_empty(),
        Kind::TwoStageHq(_, l, _) => l.is_none(),
        _ => false,
    };
    let Weights {
        checkpoint,
        gemma_root,
        upsampler,
        tiny,
        hub_distilled_lora: hub_lora,
    } = resolve_weights(&args.weights, variant, two_stage, want_hub_lora)?;
    let distilled_lora = match &mut kind {
        Kind::TwoStage(_, l, _) | Kind::A2Vid(_, l, _) if l.is_empty() => match &hub_lora {
            Some(p) => vec![LoraSpec {
                path: p.clone(),
                strength: 1.0,
            }],
            None if tiny => Vec::new(),
            None => bail!("--distilled-lora is required by the two-stage pipeline"),
        },
        Kind::TwoStage(_, l, _) | Kind::A2Vid(_, l, _) => parse_loras(l)?,
        Kind::TwoStageHq(_, l @ None, _) => {
            *l = hub_lora.clone();
            if l.is_none() && !tiny {
                bail!("--distilled-lora is required by the two-stage HQ pipeline");
            }
            Vec::new()
        }
        _ => Vec::new(),
    };
    let mut ledger = ModelLedger::new(
        dtype,
        device.clone(),
        checkpoint.clone(),
        Some(gemma_root),
        upsampler,
        loras,
    )?;
    let params = match kind {
        // the HQ pipeline has its own preset whatever the checkpoint
        Kind::TwoStageHq(..) => ltx_pipelines::utils::constants::PipelineParams::ltx_2_3_hq(),
        _ => detect_params_from_path(&checkpoint)?,
    };
    let (def_h, def_w, def_f) = if tiny {
        (512, 768, 121)
    } else if two_stage {
        (
            params.stage_2_height(),
            params.stage_2_width(),
            params.num_frames,
        )
    } else {
        (
            params.stage_1_height,
            params.stage_1_width,
            params.num_frames,
        )
    };
    let req = GenerationRequest {
        prompt: args.prompt.clone(),
        seed: args.seed.unwrap_or(params.seed),
        height: args.height.unwrap_or(def_h),
        width: args.width.unwrap_or(def_w),
        num_frames: args.num_frames.unwrap_or(def_f),
        frame_rate: args.frame_rate.unwrap_or(params.frame_rate),
        images,
        tiling: args.run.tiled_decode.then(TilingConfig::reference_default),
        enhance_prompt,
    };
    req.validate(two_stage)?;
    let audio_rate = match &kind {
        // the output carries the input soundtrack at its own rate; reading it now also rejects
        // an unreadable file before any model is loaded
        Kind::A2Vid(_, _, input) => {
            ltx_pipelines::media::audio::load_audio(
                &input.path,
                input.start_time,
                input.max_duration,
            )?
            .sample_rate
        }
        _ => VocoderModelConfig::from_checkpoint_config(&ledger.config()?)?.output_sampling_rate()
            as u32,
    };

    let (out_h, out_w) = match &kind {
        Kind::IcLora(ic) => ICLoraPipeline::output_size(&req, ic),
        _ => (req.height, req.width),
    };
    apply_vae_backend(
        &args.vae,
        &mut ledger,
        output_latent(req.num_frames, out_h, out_w),
        args.run.tiled_decode,
    )?;
    let pipeline_ic = match &kind {
        Kind::IcLora(_) => {
            if !tiny && ledger.loras.is_empty() {
                bail!("ic-lora needs the IC-LoRA: --lora PATH [STRENGTH]");
            }
            // reads the LoRAs' reference scale and checks the sizes before any model is loaded
            let p = ICLoraPipeline::new(ledger.clone())?;
            if let Kind::IcLora(ic) = &kind {
                p.validate(&req, ic)?;
            }
            Some(p)
        }
        _ => None,
    };
    let mut writer = Mp4Writer::create(
        &args.output_path,
        out_w,
        out_h,
        req.frame_rate,
        Some(audio_rate),
    )?;
    let mut bars = Bars { current: None };
    let mut frames = 0usize;
    let mut progress = |e| bars.event(e);
    let mut sink = |chunk: candle_core::Tensor| {
        frames += chunk.dim(0)?;
        writer.write_frames(&chunk)
    };
    let audio = match kind {
        Kind::Distilled => DistilledPipeline::new(ledger).run(&req, &mut progress, &mut sink)?,
        Kind::OneStage(g) => {
            let g = guidance_request(g, &params, tiny);
            TI2VidOneStagePipeline::new(ledger).run(&req, &g, &mut progress, &mut sink)?
        }
        Kind::TwoStage(g, _, keyframes) => {
            let g = guidance_request(g, &params, tiny);
            let pipeline = if keyframes {
                TI2VidTwoStagesPipeline::keyframe_interpolation(ledger, &distilled_lora)?
            } else {
                TI2VidTwoStagesPipeline::new(ledger, &distilled_lora)?
            };
            pipeline.run(&req, &g, &mut progress, &mut sink)?
        }
        Kind::A2Vid(g, _, input) => {
            let g = guidance_request(g, &params, tiny);
            A2VidTwoStagePipeline::new(ledger, &distilled_lora)?.run(
                &req,
                &g,
                &input,
                &mut progress,
                &mut sink,
            )?
        }
        Kind::IcLora(ic) => {
            pipeline_ic
                .expect("built above")
                .run(&req, &ic, &mut progress, &mut sink)?
        }
        Kind::TwoStageHq(g, lora, strengths) => {
            let g = guidance_request(g, &params, tiny);
            TI2VidTwoStagesPipeline::hq(ledger, lora.as_deref(), strengths)?.run(
                &req,
                &g,
                &mut progress,
                &mut sink,
            )?
        }
    };
    let path = finish_output(writer, &mut bars, &audio)?;
    eprintln!(
        "wrote {} ({frames} frames {}x{} at {} fps, {:.2} s of audio at {} Hz) in {:.1} s",
        path.display(),
        out_w,
        out_h,
        req.frame_rate,
        audio.waveform.dim(candle_core::D::Minus1)? as f64 / audio.sampling_rate as f64,
        audio.sampling_rate,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

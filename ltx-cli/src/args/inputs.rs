//! The raw flag values turned into typed inputs, with every check that needs no model: paths that
//! exist and can be read (and parse as what they claim to be), finite numbers in range, an output
//! folder that can be written. All of it runs before any download or load.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ltx_core::loader::SafetensorsFiles;
use ltx_pipelines::utils::constants::{
    PipelineParams, DEFAULT_LORA_STRENGTH, DEFAULT_NEGATIVE_PROMPT,
};
use ltx_pipelines::utils::duration::AutoDuration;
use ltx_pipelines::utils::model_ledger::LoraSpec;
use ltx_pipelines::utils::request::{GuidanceRequest, ImageConditioningInput, PromptEnhancement};

use super::{GuidanceArgs, RunArgs};

/// The output file: absent (or `force`), in a folder that exists and can be written.
pub fn check_output(path: &Path, force: bool) -> Result<()> {
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

/// `path` is a file this process can open for reading.
pub fn check_readable(what: &str, path: &Path) -> Result<()> {
    if !path.is_file() {
        bail!(
            "{what} `{}` does not exist or is not a file",
            path.display()
        );
    }
    std::fs::File::open(path)
        .with_context(|| format!("cannot read the {what} `{}`", path.display()))?;
    Ok(())
}

/// A finite number (`flag` names it in the error).
fn finite(flag: &str, value: &str) -> Result<f64> {
    let v: f64 = value
        .parse()
        .with_context(|| format!("{flag}: `{value}` is not a number"))?;
    if !v.is_finite() {
        bail!("{flag}: {v} is not a finite number");
    }
    Ok(v)
}

/// A strength in [0, 1].
pub fn unit_strength(flag: &str, value: &str) -> Result<f64> {
    let v = finite(flag, value)?;
    if !(0.0..=1.0).contains(&v) {
        bail!("{flag}: strength {v} is outside [0, 1]");
    }
    Ok(v)
}

/// `--auto-duration MIN_SECONDS MAX_SECONDS` as a window (min <= max, both finite).
pub fn auto_duration(values: Option<&[f64]>) -> Result<Option<AutoDuration>> {
    let Some(values) = values else {
        return Ok(None);
    };
    let &[min_seconds, max_seconds] = values else {
        bail!("--auto-duration takes MIN_SECONDS MAX_SECONDS");
    };
    let window = AutoDuration {
        min_seconds,
        max_seconds,
    };
    if !(min_seconds.is_finite() && max_seconds.is_finite()) || min_seconds > max_seconds {
        bail!("--auto-duration: MIN_SECONDS ({min_seconds}) must be <= MAX_SECONDS ({max_seconds}), both finite");
    }
    if min_seconds <= 0.0 {
        bail!("--auto-duration: MIN_SECONDS must be positive, got {min_seconds}");
    }
    Ok(Some(window))
}

/// `--image` values come flat; each group starts with a path (3 or 4 values). The files are
/// checked by [`check_images`], once the request has checked the frame indices.
pub fn images(flat: &[String]) -> Result<Vec<ImageConditioningInput>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < flat.len() {
        if i + 3 > flat.len() {
            bail!("--image needs PATH FRAME_IDX STRENGTH [CRF]");
        }
        let path = PathBuf::from(&flat[i]);
        let frame_idx: usize = flat[i + 1]
            .parse()
            .with_context(|| format!("--image FRAME_IDX `{}`", flat[i + 1]))?;
        let strength = unit_strength("--image STRENGTH", &flat[i + 2])?;
        // without a CRF the checkpoint generation's default applies (33; 18 from LTX-2.4 on)
        let (crf, used) = match flat.get(i + 3).and_then(|s| s.parse::<u32>().ok()) {
            Some(c) => (Some(c), 4),
            None => (None, 3),
        };
        if let Some(crf) = crf.filter(|&c| c > 51) {
            bail!("--image CRF {crf} is outside the H.264 range 0..=51");
        }
        out.push(ImageConditioningInput {
            path,
            frame_idx,
            strength,
            crf,
        });
        i += used;
    }
    Ok(out)
}

/// Every conditioning image is a readable picture.
pub fn check_images(images: &[ImageConditioningInput]) -> Result<()> {
    for img in images {
        check_readable("image", &img.path)?;
        ltx_pipelines::media::load_image(&img.path)?;
    }
    Ok(())
}

/// `--lora PATH [STRENGTH]` values (flat, repeatable): each a readable safetensors file with a
/// finite strength.
pub fn loras(flat: &[String]) -> Result<Vec<LoraSpec>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < flat.len() {
        let path = PathBuf::from(&flat[i]);
        let (strength, used) = match flat.get(i + 1).map(|s| (s, s.parse::<f64>())) {
            Some((s, Ok(_))) => (finite("--lora STRENGTH", s)?, 2),
            _ => (DEFAULT_LORA_STRENGTH, 1),
        };
        out.push(lora(path, strength)?);
        i += used;
    }
    Ok(out)
}

/// One LoRA, checked: a readable safetensors file (its header is parsed).
pub fn lora(path: PathBuf, strength: f64) -> Result<LoraSpec> {
    if !strength.is_finite() {
        bail!(
            "LoRA `{}`: strength {strength} is not finite",
            path.display()
        );
    }
    check_readable("LoRA", &path)?;
    SafetensorsFiles::open(&[&path]).with_context(|| {
        format!(
            "LoRA `{}` is not a readable safetensors file",
            path.display()
        )
    })?;
    Ok(LoraSpec { path, strength })
}

/// `--enhance-prompt [--enhance-system-prompt FILE] [--prompt-enhancer-gemma-root PATH]`; the
/// files are read / checked now so a bad path fails before any work.
pub fn enhancement(args: &RunArgs) -> Result<Option<PromptEnhancement>> {
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
    if let Some(g) = &args.prompt_enhancer_gemma_root {
        if !g.is_dir() {
            check_readable("prompt enhancer Gemma", g)?;
        }
    }
    Ok(Some(PromptEnhancement {
        system_prompt,
        image: None,
        gemma: args.prompt_enhancer_gemma_root.clone(),
    }))
}

/// The guidance of a run: `params`' preset with the flags given on top. The tiny model has two
/// blocks: its default STG block is the last one, as the presets perturb a late block at full
/// size.
pub fn guidance(g: &GuidanceArgs, params: &PipelineParams, tiny: bool) -> GuidanceRequest {
    let mut video = params.video_guider_params.clone();
    let mut audio = params.audio_guider_params.clone();
    if tiny {
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
    if let Some(b) = &g.video_stg_blocks {
        video.stg_blocks = Some(b.clone());
    }
    if let Some(b) = &g.audio_stg_blocks {
        audio.stg_blocks = Some(b.clone());
    }
    GuidanceRequest {
        negative_prompt: g
            .negative_prompt
            .clone()
            .unwrap_or_else(|| DEFAULT_NEGATIVE_PROMPT.to_string()),
        num_inference_steps: g.num_inference_steps.unwrap_or(params.num_inference_steps),
        video_guider: video,
        audio_guider: audio,
    }
}

/// The guidance flags checked on their own (scales finite and non-negative, a step count whose
/// schedule is usable), before the checkpoint's preset is known.
pub fn check_guidance(g: &GuidanceArgs) -> Result<()> {
    Ok(guidance(g, &PipelineParams::ltx_2(), false).validate()?)
}

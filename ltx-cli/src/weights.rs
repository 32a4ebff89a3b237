//! Where a run's weights come from — local files, the Hugging Face Hub, or the built-in tiny
//! model — and what the checkpoint's header says about them before anything is loaded.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use ltx_core::loader::SafetensorsFiles;
use ltx_core::model::audio_vae::vocoder::VocoderModelConfig;
use ltx_core::model::transformer::{LtxModelConfig, LtxModelType};
use ltx_pipelines::tiny::{default_cache_dir, ensure_tiny_model};
use ltx_pipelines::utils::constants::{detect_params, PipelineParams};
use ltx_pipelines::utils::model_ledger::LoraSpec;

use crate::args::inputs::check_readable;
use crate::args::WeightArgs;
use crate::hub::{Hub, Variant};

/// The resolved weight files of a run.
pub struct Weights {
    pub checkpoint: PathBuf,
    pub gemma_root: PathBuf,
    pub upsampler: Option<PathBuf>,
    /// The built-in tiny model stands in.
    pub tiny: bool,
    /// The distilled LoRA from the Hub repo, when one was asked for.
    pub hub_distilled_lora: Option<PathBuf>,
}

/// What a run needs besides the checkpoint: the upsampler (two-stage pipelines) and the Hub's
/// distilled LoRA (when the user gave none).
#[derive(Clone, Copy, Debug)]
pub struct Needs {
    pub variant: Variant,
    pub upsampler: bool,
    pub hub_distilled_lora: bool,
}

/// Hub files fill whatever was not given as a local path; with no checkpoint at all the tiny
/// model is used (built once into the cache).
pub fn resolve(w: &WeightArgs, needs: Needs) -> Result<Weights> {
    check_local(w)?;
    let mut checkpoint_path = w.checkpoint_path.clone();
    let mut gemma_path = w.gemma_root.clone();
    let mut upsampler_path = w.spatial_upsampler_path.clone();
    let mut hub_distilled_lora = None;
    if w.model.is_some() || w.gemma.is_some() {
        let offline = w.offline || crate::hub::offline_from_env();
        let hub = Hub::new(None, offline)?;
        if let Some(repo) = &w.model {
            let files = crate::hub::repo_files(repo, needs.variant)?;
            if checkpoint_path.is_none() {
                checkpoint_path = Some(hub.file(repo, files.checkpoint)?);
            }
            if upsampler_path.is_none() && needs.upsampler {
                upsampler_path = Some(hub.file(repo, files.spatial_upsampler)?);
            }
            if needs.hub_distilled_lora {
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
            let upsampler = match (upsampler_path, needs.upsampler) {
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

/// The local weight paths, checked before the Hub is asked for anything.
fn check_local(w: &WeightArgs) -> Result<()> {
    if w.checkpoint_path.is_some()
        && w.gemma_root.is_none()
        && w.gemma.is_none()
        && w.model.is_none()
    {
        bail!("--gemma-root (or --gemma REPO) is required with --checkpoint-path");
    }
    if let Some(p) = &w.checkpoint_path {
        check_readable("checkpoint", p)?;
    }
    if let Some(p) = &w.spatial_upsampler_path {
        check_readable("spatial upsampler", p)?;
    }
    if let Some(p) = &w.duration_head_path {
        check_readable("duration head", p)?;
    }
    if let Some(root) = &w.gemma_root {
        if !root.is_dir() {
            bail!(
                "Gemma root `{}` does not exist or is not a folder",
                root.display()
            );
        }
    }
    Ok(())
}

impl Weights {
    /// The distilled LoRA of a two-stage run: the user's, else the Hub's (at strength 1), else
    /// none for the tiny model; a real checkpoint without one is an error.
    pub fn distilled_lora(
        &self,
        given: Option<LoraSpec>,
        pipeline: &str,
    ) -> Result<Option<LoraSpec>> {
        match (given, &self.hub_distilled_lora) {
            (Some(l), _) => Ok(Some(l)),
            (None, Some(p)) => Ok(Some(LoraSpec {
                path: p.clone(),
                strength: 1.0,
            })),
            (None, None) if self.tiny => Ok(None),
            (None, None) => bail!("--distilled-lora is required by the {pipeline} pipeline"),
        }
    }
}

/// What the checkpoint's header says: the pipeline preset its `model_version` selects (a warning
/// names the preset assumed when it has none), the transformer's block count and the vocoder's
/// output rate.
pub struct CheckpointFacts {
    pub params: PipelineParams,
    pub num_blocks: usize,
    pub audio_rate: u32,
}

impl CheckpointFacts {
    pub fn read(weights: &Weights) -> Result<Self> {
        let path = &weights.checkpoint;
        let files = SafetensorsFiles::open(&[path])
            .with_context(|| format!("cannot read the checkpoint `{}`", path.display()))?;
        let config = files.config()?;
        let transformer =
            LtxModelConfig::from_checkpoint_config(&config, LtxModelType::AudioVideo)?;
        let vocoder = VocoderModelConfig::from_checkpoint_config(&config)?;
        Ok(Self {
            params: detect_params(&files),
            num_blocks: transformer.num_layers,
            audio_rate: vocoder.output_sampling_rate() as u32,
        })
    }
}

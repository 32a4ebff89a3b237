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
use ltx_pipelines::utils::model_paths::{Component, ModelPaths, PathFlags};

use crate::args::inputs::check_readable;
use crate::args::WeightArgs;
use crate::hub::{Hub, ModelFiles, SplitFiles, Variant};

/// The resolved weight files of a run.
pub struct Weights {
    pub paths: ModelPaths,
    pub upsampler: Option<PathBuf>,
    /// The built-in tiny model stands in.
    pub tiny: bool,
    /// The distilled LoRA from the Hub repo, when one was asked for.
    pub hub_distilled_lora: Option<PathBuf>,
}

/// What a run needs besides the model: the upsampler (two-stage pipelines), the Hub's distilled
/// LoRA (when the user gave none), the duration head (a frame count to predict).
#[derive(Clone, Copy, Debug)]
pub struct Needs {
    pub variant: Variant,
    pub upsampler: bool,
    pub hub_distilled_lora: bool,
    pub duration_head: bool,
}

/// The components every generation reads.
pub const GENERATION_COMPONENTS: [Component; 4] = [
    Component::Transformer,
    Component::TextEncoder,
    Component::VideoVae,
    Component::AudioVae,
];

/// Hub files fill whatever was not given as a local path; with no model file at all the tiny
/// model is used (built once into the cache). The layout rules ([`ModelPaths::from_flags`]) and
/// the components a generation needs are checked before anything is downloaded.
pub fn resolve(w: &WeightArgs, needs: Needs) -> Result<Weights> {
    check_local(w)?;
    let given = w.path_flags();
    // a layout error is reported before the Hub is asked for anything
    ModelPaths::from_flags(given.clone())?;
    let mut flags = given;
    let mut upsampler_path = w.spatial_upsampler_path.clone();
    let mut hub_distilled_lora = None;
    if w.model.is_some() || w.gemma.is_some() {
        let offline = w.offline || crate::hub::offline_from_env();
        let hub = Hub::new(None, offline)?;
        let mut split_repo = false;
        if let Some(repo) = &w.model {
            let files = crate::hub::repo_files(repo, needs.variant)?;
            match &files.model {
                ModelFiles::Monolith(checkpoint) => {
                    if !flags.is_split() && flags.checkpoint.is_none() {
                        flags.checkpoint = Some(hub.file(repo, checkpoint)?);
                    }
                }
                ModelFiles::Split(split) => {
                    split_repo = true;
                    if flags.checkpoint.is_some() || flags.gemma_root.is_some() || w.gemma.is_some()
                    {
                        bail!(
                            "{repo} is one file per component: use the split flags \
                             (--transformer-path, --text-encoder-path, ...) to replace its \
                             files, not --checkpoint-path / --gemma-root / --gemma"
                        );
                    }
                    fill_split(&hub, repo, split, &mut flags, needs)?;
                }
            }
            if upsampler_path.is_none() && needs.upsampler {
                upsampler_path = Some(hub.file(repo, files.spatial_upsampler)?);
            }
            if needs.hub_distilled_lora {
                hub_distilled_lora = Some(hub.file(repo, files.distilled_lora)?);
            }
        }
        if !split_repo && !flags.is_split() && flags.gemma_root.is_none() {
            let repo = w.gemma.as_deref().unwrap_or(crate::hub::DEFAULT_GEMMA_REPO);
            flags.gemma_root = Some(hub.gemma_root(repo)?);
        }
    }
    match ModelPaths::from_flags(flags)? {
        Some(paths) => {
            paths.require(&GENERATION_COMPONENTS)?;
            let upsampler = match (upsampler_path, needs.upsampler) {
                (Some(p), _) => Some(p),
                (None, false) => None,
                (None, true) => {
                    bail!("--spatial-upsampler-path is required by the two-stage pipelines")
                }
            };
            Ok(Weights {
                paths,
                upsampler,
                tiny: false,
                hub_distilled_lora,
            })
        }
        None => {
            if w.spatial_upsampler_path.is_some() {
                bail!(
                    "--spatial-upsampler-path needs a model (--checkpoint-path or the split flags)"
                );
            }
            let cache = w.cache_dir.clone().unwrap_or_else(default_cache_dir);
            eprintln!(
                "no model given: using the built-in tiny model (noise-like output) from {}",
                cache.display()
            );
            let t = ensure_tiny_model(&cache)?;
            Ok(Weights {
                paths: ModelPaths::monolith(t.checkpoint, Some(t.gemma_root)),
                upsampler: Some(t.spatial_upsampler),
                tiny: true,
                hub_distilled_lora: None,
            })
        }
    }
}

/// The split repository's files for the components not given locally (the duration head only
/// when a frame count is to be predicted).
fn fill_split(
    hub: &Hub,
    repo: &str,
    split: &SplitFiles,
    flags: &mut PathFlags,
    needs: Needs,
) -> Result<()> {
    let slots: [(&mut Option<PathBuf>, &str, bool); 5] = [
        (&mut flags.transformer, split.transformer, true),
        (&mut flags.text_encoder, split.text_encoder, true),
        (&mut flags.video_vae, split.video_vae, true),
        (&mut flags.audio_vae, split.audio_vae, true),
        (
            &mut flags.duration_head,
            split.duration_head,
            needs.duration_head,
        ),
    ];
    for (slot, name, needed) in slots {
        if slot.is_none() && needed {
            *slot = Some(hub.file(repo, name)?);
        }
    }
    Ok(())
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
    let files = [
        ("checkpoint", &w.checkpoint_path),
        ("transformer", &w.transformer_path),
        ("video VAE", &w.video_vae_path),
        ("audio VAE", &w.audio_vae_path),
        ("duration head", &w.duration_head_path),
        ("spatial upsampler", &w.spatial_upsampler_path),
    ];
    for (what, path) in files {
        if let Some(p) = path {
            check_readable(what, p)?;
        }
    }
    if let Some(p) = &w.text_encoder_path {
        if !p.is_dir() {
            check_readable("text encoder", p)?;
        }
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
        let open = |c: Component| -> Result<SafetensorsFiles> {
            let path = weights.paths.get(c)?;
            SafetensorsFiles::open(&[path])
                .with_context(|| format!("cannot read the {} `{}`", c.name(), path.display()))
        };
        let files = open(Component::Transformer)?;
        let transformer =
            LtxModelConfig::from_checkpoint_config(&files.config()?, LtxModelType::AudioVideo)?;
        let vocoder =
            VocoderModelConfig::from_checkpoint_config(&open(Component::AudioVae)?.config()?)?;
        Ok(Self {
            params: detect_params(&files),
            num_blocks: transformer.num_layers,
            audio_rate: vocoder.output_sampling_rate() as u32,
        })
    }
}

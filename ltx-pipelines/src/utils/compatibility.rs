//! The checks between the parts of a model, from their headers: the text encoder against the
//! transformer (1.2.0's `_check_gemma_version`) and each VAE against the transformer. A split set
//! makes it easy to pair files of different models; the wrong pair would load and produce noise.

use std::path::PathBuf;

use ltx_core::loader::SafetensorsFiles;
use ltx_core::text_encoders::gemma::GemmaAssets;

use super::constants::{checkpoint_model_version, model_family};
use super::model_paths::Component;
use crate::{Error, Result};

/// From this `model_version` on a transformer must name the Gemma it was trained with
/// (`gemma_source_checkpoint`): below LTX-2.5's stamp, so pre-release 2.4 files are covered.
pub const GEMMA_SOURCE_CHECKPOINT_REQUIRED_SINCE: [u32; 3] = [2, 4, 0];

fn first_path(files: &SafetensorsFiles) -> PathBuf {
    files.paths()[0].to_path_buf()
}

/// The transformer's expected Gemma against the text encoder's: a transformer that declares
/// `gemma_source_checkpoint.gemma_version` takes only a text encoder whose config declares the
/// same `gemma_version`; one from LTX-2.4 on must declare it; an older one takes Gemma-3 only.
pub fn check_gemma_version(transformer: &SafetensorsFiles, gemma: &GemmaAssets) -> Result<()> {
    let mismatch = |reason: String| Error::Incompatible {
        first: first_path(transformer),
        second: gemma.source().to_path_buf(),
        reason,
    };
    let actual = gemma.gemma_version();
    if let Some(source) = transformer.metadata_json("gemma_source_checkpoint")? {
        let expected = source.get("gemma_version").and_then(|v| v.as_str());
        if expected != actual {
            return Err(mismatch(format!(
                "the transformer was trained with the text encoder gemma_version={}, the text \
                 encoder is gemma_version={} ({})",
                show(expected),
                show(actual),
                gemma.model_type()
            )));
        }
        return Ok(());
    }
    let version = checkpoint_model_version(transformer);
    if version.as_slice() >= GEMMA_SOURCE_CHECKPOINT_REQUIRED_SINCE.as_slice() {
        if actual.is_none() {
            tracing::warn!(
                "the transformer (model_version {version:?}) names no gemma_source_checkpoint and \
                 the text encoder no gemma_version: their compatibility is not checked"
            );
            return Ok(());
        }
        return Err(mismatch(format!(
            "the transformer (model_version {version:?}) must name its text encoder \
             (gemma_source_checkpoint.gemma_version) but does not"
        )));
    }
    if gemma.model_type() != "gemma3" {
        return Err(mismatch(format!(
            "the transformer ({}) takes a Gemma-3 text encoder (model_type gemma3), the text \
             encoder is model_type {}",
            model_family(&version).unwrap_or("no model_version"),
            gemma.model_type()
        )));
    }
    Ok(())
}

fn show(v: Option<&str>) -> String {
    v.map_or("(none)".into(), |v| format!("{v:?}"))
}

/// A VAE file of another model generation than the transformer's (both must declare a
/// `model_version` for the check to apply; a monolith checks against itself).
pub fn check_same_generation(
    transformer: &SafetensorsFiles,
    vae: &SafetensorsFiles,
    component: Component,
) -> Result<()> {
    let (t, v) = (
        checkpoint_model_version(transformer),
        checkpoint_model_version(vae),
    );
    match (model_family(&t), model_family(&v)) {
        (Some(a), Some(b)) if a != b => Err(Error::Incompatible {
            first: first_path(transformer),
            second: first_path(vae),
            reason: format!("the transformer is {a}, the {} is {b}", component.name()),
        }),
        _ => Ok(()),
    }
}

//! The built-in tiny model (no Python twin): an LTX-2-architecture checkpoint at tiny widths with
//! every component under its released key names and `config` metadata, a tiny spatial upsampler
//! file and a tiny Gemma root with a word-level tokenizer, all drawn from a fixed seed and written
//! as safetensors to a cache folder. It goes through the same loader, ledger and pipelines as a
//! real download, so `ltx generate` runs every stage offline; its output is noise-like.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use ltx_core::loader::synthetic::{random_weights, save_safetensors};
use ltx_core::model::audio_vae::vocoder::{VocoderModel, VocoderModelConfig};
use ltx_core::model::audio_vae::{AudioDecoder, AudioEncoder, AudioVaeConfig};
use ltx_core::model::transformer::{LtxModel, LtxModelConfig, LtxModelType};
use ltx_core::model::upsampler::{LatentUpsampler, LatentUpsamplerConfig};
use ltx_core::model::video_vae::{VideoDecoder, VideoEncoder, VideoVaeConfig};
use ltx_core::text_encoders::gemma::{
    EmbeddingsProcessor, Gemma3TextConfig, Gemma3TextModel, GemmaDims,
};
use serde_json::{json, Value};

use crate::{Error, Result};

mod ltx25;
pub use ltx25::{ensure_tiny_ltx25, TinyLtx25};

/// Bumped whenever the generated files change, so stale caches are not reused.
const VERSION: &str = "tiny-v4";

/// The tiny checkpoint's `model_version` metadata (an LTX-2 layout: the LTX-2 presets apply).
pub const TINY_MODEL_VERSION: &str = "tiny-ltx-2";
const STORAGE: DType = DType::BF16;

/// Paths of the built-in tiny model.
#[derive(Clone, Debug, PartialEq)]
pub struct TinyModel {
    pub checkpoint: PathBuf,
    pub spatial_upsampler: PathBuf,
    pub gemma_root: PathBuf,
}

/// The default cache folder: `$LTX_CACHE`, else `$XDG_CACHE_HOME/ltx-rs`, else
/// `$HOME/.cache/ltx-rs`, else the system temp folder.
pub fn default_cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("LTX_CACHE") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(p).join("ltx-rs");
    }
    if let Some(p) = std::env::var_os("HOME") {
        return PathBuf::from(p).join(".cache").join("ltx-rs");
    }
    std::env::temp_dir().join("ltx-rs")
}

fn res_x(n: usize, decoder: bool) -> Value {
    if decoder {
        json!(["res_x", {"num_layers": n, "inject_noise": false}])
    } else {
        json!(["res_x", {"num_layers": n}])
    }
}

/// The tiny model's architecture (`tiny_model.json`, shared with the reference fixture generator,
/// which builds the same model for the `pipeline` fixtures).
const TINY_MODEL_JSON: &str = include_str!("tiny_model.json");

fn tiny_model_entry(key: &str) -> Value {
    let doc: Value = serde_json::from_str(TINY_MODEL_JSON).expect("tiny_model.json is valid JSON");
    doc.get(key)
        .cloned()
        .unwrap_or_else(|| panic!("tiny_model.json has no `{key}`"))
}

/// The `config` metadata of the tiny checkpoint: the 19B layout (split RoPE, caption projection in
/// the transformer, FeatureExtractorV1 connectors, HiFi-GAN vocoder) at tiny widths, with the
/// pipelines' fixed latent sizes (128 video channels, 8x16 audio features, 8x32x32 compression;
/// the audio VAE's base width must equal the 128 audio latent features: the reference sizes the
/// latent statistics by it).
pub fn tiny_config() -> Value {
    tiny_model_entry("checkpoint_config")
}

/// The tiny spatial x2 upsampler's flat config.
pub fn tiny_upsampler_config() -> Value {
    tiny_model_entry("spatial_upsampler_config")
}

/// A word-level `tokenizer.json` for the tiny Gemma (`<pad>` 0, `<eos>` 1, `<bos>` 2,
/// `<unk>` 3), lower-casing, splitting on whitespace and punctuation, `<bos>` prepended.
pub fn tiny_tokenizer_json() -> (String, usize) {
    word_tokenizer_json(true)
}

/// [`tiny_tokenizer_json`] with (Gemma-3) or without (Gemma-4: the encoder prepends it) the
/// BOS-adding post-processor.
fn word_tokenizer_json(bos_template: bool) -> (String, usize) {
    let mut vocab = serde_json::Map::new();
    for (i, t) in ["<pad>", "<eos>", "<bos>", "<unk>"].iter().enumerate() {
        vocab.insert(t.to_string(), json!(i));
    }
    let words = tiny_model_entry("tokenizer_words");
    for w in words
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !vocab.contains_key(w) {
            let id = vocab.len();
            vocab.insert(w.to_string(), json!(id));
        }
    }
    let n = vocab.len();
    let special = |id: usize, content: &str| {
        json!({"id": id, "content": content, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true})
    };
    let post_processor = if bos_template {
        json!({"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<bos>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}],
            "special_tokens": {"<bos>": {"id": "<bos>", "ids": [2], "tokens": ["<bos>"]}}})
    } else {
        Value::Null
    };
    let tok = json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [special(0, "<pad>"), special(1, "<eos>"), special(2, "<bos>"),
            special(3, "<unk>")],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": post_processor,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}
    });
    (tok.to_string(), n)
}

fn tiny_gemma_config(vocab: usize) -> Value {
    let mut text = tiny_model_entry("gemma_text_config");
    text["vocab_size"] = json!(vocab);
    json!({ "text_config": text })
}

/// Renames module-side keys to checkpoint keys with `map` (`None`: drop the key).
fn rename(
    tensors: HashMap<String, Tensor>,
    map: impl Fn(&str) -> Option<String>,
) -> HashMap<String, Tensor> {
    tensors
        .into_iter()
        .filter_map(|(k, v)| map(&k).map(|nk| (nk, v)))
        .collect()
}

/// VAE-style keys: `per_channel_statistics.*` shared under `<root>.`, the rest under `<part>.`.
fn vae_keys(
    root: &'static str,
    part: &'static str,
    keep_stats: bool,
) -> impl Fn(&str) -> Option<String> {
    move |k: &str| {
        if k.starts_with("per_channel_statistics.") {
            keep_stats.then(|| format!("{root}.{k}"))
        } else {
            Some(format!("{root}.{part}.{k}"))
        }
    }
}

/// The embeddings processor's module-side keys under their checkpoint names.
fn embeddings_key(k: &str) -> Option<String> {
    for (module, ckpt) in [
        ("feature_extractor.", "text_embedding_projection."),
        (
            "video_connector.",
            "model.diffusion_model.video_embeddings_connector.",
        ),
        (
            "audio_connector.",
            "model.diffusion_model.audio_embeddings_connector.",
        ),
    ] {
        if let Some(rest) = k.strip_prefix(module) {
            return Some(format!("{ckpt}{rest}"));
        }
    }
    None
}

fn build_checkpoint(path: &Path) -> Result<()> {
    let config = tiny_config();
    let mut all: HashMap<String, Tensor> = HashMap::new();
    let kind = LtxModelType::AudioVideo;
    let tcfg = LtxModelConfig::from_checkpoint_config(&config, kind)?;
    all.extend(random_weights(
        1,
        STORAGE,
        "model.diffusion_model.",
        |vb| LtxModel::new(&tcfg, kind, vb).map_err(ltx_core::Error::from),
    )?);

    let vcfg = VideoVaeConfig::from_checkpoint_config(&config)?;
    let enc = random_weights(2, STORAGE, "", |vb| VideoEncoder::new(&vcfg, vb))?;
    all.extend(rename(enc, vae_keys("vae", "encoder", true)));
    let dec = random_weights(3, STORAGE, "", |vb| VideoDecoder::new(&vcfg, vb))?;
    all.extend(rename(dec, vae_keys("vae", "decoder", false)));

    let acfg = AudioVaeConfig::from_checkpoint_config(&config)?;
    let aenc = random_weights(4, STORAGE, "", |vb| AudioEncoder::new(&acfg, vb))?;
    all.extend(rename(aenc, vae_keys("audio_vae", "encoder", true)));
    let adec = random_weights(5, STORAGE, "", |vb| AudioDecoder::new(&acfg, vb))?;
    all.extend(rename(adec, vae_keys("audio_vae", "decoder", false)));

    let voc_cfg = VocoderModelConfig::from_checkpoint_config(&config)?;
    all.extend(random_weights(6, STORAGE, "vocoder.", |vb| {
        VocoderModel::new(&voc_cfg, vb).map_err(ltx_core::Error::from)
    })?);

    let dims = GemmaDims {
        hidden_size: 24,
        num_hidden_layers: 3,
    };
    let emb = random_weights(7, STORAGE, "", |vb| {
        EmbeddingsProcessor::new(&config, dims, true, vb)
    })?;
    all.extend(rename(emb, embeddings_key));
    let metadata = HashMap::from([
        ("config".to_string(), config.to_string()),
        ("model_version".to_string(), TINY_MODEL_VERSION.to_string()),
    ]);
    save_safetensors(path, &all, metadata)?;
    Ok(())
}

fn build_upsampler(path: &Path) -> Result<()> {
    let config = tiny_upsampler_config();
    let cfg = LatentUpsamplerConfig::from_checkpoint_config(&config)?;
    let w = random_weights(8, STORAGE, "", |vb| LatentUpsampler::new(&cfg, vb))?;
    let metadata = HashMap::from([("config".to_string(), config.to_string())]);
    save_safetensors(path, &w, metadata)?;
    Ok(())
}

fn build_gemma(root: &Path) -> Result<()> {
    let (tokenizer, vocab) = tiny_tokenizer_json();
    let config = tiny_gemma_config(vocab);
    let cfg = Gemma3TextConfig::from_json(&config)?;
    let w = random_weights(9, STORAGE, "language_model.model.", |vb| {
        Gemma3TextModel::new(&cfg, vb).map_err(ltx_core::Error::from)
    })?;
    let io = |p: PathBuf, r: std::io::Result<()>| r.map_err(|source| Error::Io { path: p, source });
    io(
        root.join("tokenizer.json"),
        std::fs::write(root.join("tokenizer.json"), tokenizer),
    )?;
    io(
        root.join("config.json"),
        std::fs::write(root.join("config.json"), config.to_string()),
    )?;
    save_safetensors(&root.join("model.safetensors"), &w, HashMap::new())?;
    Ok(())
}

/// The tiny model under `cache_dir`, generated on first use (a few seconds).
pub fn ensure_tiny_model(cache_dir: &Path) -> Result<TinyModel> {
    let at = |dir: &Path| TinyModel {
        checkpoint: dir.join("ltx-tiny.safetensors"),
        spatial_upsampler: dir.join("ltx-tiny-spatial-upscaler-x2.safetensors"),
        gemma_root: dir.join("gemma"),
    };
    let dir = ensure_built(
        cache_dir,
        VERSION,
        |dir| {
            let p = at(dir);
            p.checkpoint.is_file()
                && p.spatial_upsampler.is_file()
                && p.gemma_root.join("model.safetensors").is_file()
        },
        |tmp| {
            let p = at(tmp);
            create_dir(&p.gemma_root)?;
            build_checkpoint(&p.checkpoint)?;
            build_upsampler(&p.spatial_upsampler)?;
            build_gemma(&p.gemma_root)
        },
    )?;
    Ok(at(&dir))
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })
}

/// `cache_dir/version`, built by `build` into a temporary folder renamed into place unless
/// `complete` already holds for it, so an interrupted run never leaves a partial model.
fn ensure_built(
    cache_dir: &Path,
    version: &str,
    complete: impl Fn(&Path) -> bool,
    build: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let dir = cache_dir.join(version);
    if complete(&dir) {
        return Ok(dir);
    }
    create_dir(cache_dir)?;
    if dir.exists() {
        // an incomplete folder (written by hand, or by an older version): start over
        let _ = std::fs::remove_dir_all(&dir);
    }
    let tmp = cache_dir.join(format!(
        ".{version}.{}.{:?}.partial",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    create_dir(&tmp)?;
    if let Err(e) = build(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    // another process may have finished first: then its copy (identical) stays in place
    if let Err(e) = std::fs::rename(&tmp, &dir) {
        let _ = std::fs::remove_dir_all(&tmp);
        if !complete(&dir) {
            return Err(Error::Io {
                path: dir,
                source: e,
            });
        }
    }
    Ok(dir)
}

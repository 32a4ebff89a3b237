//! Port of `ltx_core/text_encoders/gemma/gemma_assets.py`: a Gemma text encoder's config,
//! tokenizer and sidecar files, from a Hugging Face root folder or from one packed `.safetensors`
//! text-encoder file (LTX-2.5's layout), plus the weight files to build the decoder from.
//!
//! A packed file holds the Hugging Face config as metadata `gemma_config`, `tokenizer.json` as the
//! U8 tensor `tokenizer_json`, each sidecar (`tokenizer_config.json`, `processor_config.json`,
//! `chat_template.jinja`, ...) as a U8 tensor `hf_asset__<name>` (older packs: a metadata string
//! of that name), next to the language-model weights (and LTX's `text_embedding_projection.*`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::config::Gemma3TextConfig;
use super::feature_extractor::GemmaDims;
use super::gemma3::gemma_llm_key_ops;
use super::gemma4::{gemma4_llm_key_ops, Gemma4TextConfig};
use crate::error::{Error, Result};
use crate::loader::SDOps;
use packed::PackedFile;

mod packed;
#[cfg(test)]
pub(crate) mod test_files;
#[cfg(test)]
mod tests;

/// Metadata key of a packed file's Hugging Face config (JSON).
pub const GEMMA_CONFIG_METADATA_KEY: &str = "gemma_config";
/// Tensor of a packed file holding `tokenizer.json`'s bytes.
pub const TOKENIZER_JSON_TENSOR_KEY: &str = "tokenizer_json";
/// Prefix of a packed file's sidecar tensors (`hf_asset__tokenizer_config.json`, ...).
pub const HF_ASSET_TENSOR_PREFIX: &str = "hf_asset__";
/// Sidecars a packed file must hold.
pub const REQUIRED_SIDECARS: [&str; 2] = ["tokenizer_config.json", "processor_config.json"];
/// Sidecars older (Comfy) packs store as metadata strings instead of tensors.
const METADATA_FALLBACK_SIDECARS: [&str; 4] = [
    REQUIRED_SIDECARS[0],
    REQUIRED_SIDECARS[1],
    "chat_template.jinja",
    "generation_config.json",
];
/// A root folder's sidecars: every file with one of these extensions except the two below.
const SIDECAR_EXTENSIONS: [&str; 2] = ["json", "jinja"];
const NOT_SIDECARS: [&str; 2] = ["config.json", "tokenizer.json"];

/// What can be wrong with a Gemma text encoder's files.
#[derive(Debug, thiserror::Error)]
pub enum GemmaError {
    #[error("Gemma path `{path}` is neither a directory nor a .safetensors file")]
    NotFound { path: PathBuf },

    #[error(
        "text encoder `{path}` has no `{GEMMA_CONFIG_METADATA_KEY}` metadata (its Hugging Face \
         config as JSON)"
    )]
    MissingConfig { path: PathBuf },

    #[error("text encoder `{path}` has no {what}")]
    MissingTokenizer { path: PathBuf, what: &'static str },

    #[error(
        "Gemma assets from `{path}` lack the required sidecar(s) {names}: pack each as a \
         `{HF_ASSET_TENSOR_PREFIX}<name>` tensor (or a metadata string)"
    )]
    MissingSidecars { path: PathBuf, names: String },

    #[error("`{path}`: {what} is not valid JSON: {reason}")]
    InvalidJson {
        path: PathBuf,
        what: String,
        reason: String,
    },

    #[error(
        "`{path}`: Gemma model_type `{found}` cannot encode prompts here (supported: gemma3, \
         gemma4_unified){hint}"
    )]
    UnsupportedModelType {
        path: PathBuf,
        found: String,
        hint: &'static str,
    },

    #[error("Gemma root `{path}` has no .safetensors weights")]
    NoWeights { path: PathBuf },

    #[error("Gemma root `{path}` has {found} of its {expected} weight shards")]
    MissingShards {
        path: PathBuf,
        found: usize,
        expected: usize,
    },

    #[error("`{path}`: asset tensor `{key}` has dtype {dtype}, not an integer byte string")]
    BadAssetTensor {
        path: PathBuf,
        key: String,
        dtype: String,
    },

    #[error("`{path}`: the tokenizer has no {role} token `{token}`")]
    MissingSpecialToken {
        path: PathBuf,
        role: &'static str,
        token: String,
    },

    #[error(
        "`{path}` is a Gemma-4 unified text encoder (model_type gemma4_unified), which cannot \
         generate text; ltx-core 1.2.0 cannot enhance prompts with it either. Pass a Gemma-3 root \
         for prompt enhancement with --prompt-enhancer-gemma-root"
    )]
    CannotGenerate { path: PathBuf },
}

/// The Gemma families that encode prompts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmaFamily {
    /// `gemma3`: LTX-2 / 2.3 (encode and enhance).
    Gemma3,
    /// `gemma4_unified`: LTX-2.5 (encode only).
    Gemma4Unified,
}

impl GemmaFamily {
    fn from_model_type(path: &Path, model_type: &str) -> Result<Self> {
        match model_type {
            "gemma3" => Ok(Self::Gemma3),
            "gemma4_unified" => Ok(Self::Gemma4Unified),
            other => Err(GemmaError::UnsupportedModelType {
                path: path.to_path_buf(),
                found: other.to_string(),
                hint: if other == "gemma4" {
                    "; `gemma4` (dense instruct Gemma-4) only enhances prompts in ltx-core 1.2.0 \
                     and is not ported"
                } else {
                    ""
                },
            }
            .into()),
        }
    }

    /// The config's `model_type`.
    pub fn model_type(self) -> &'static str {
        match self {
            Self::Gemma3 => "gemma3",
            Self::Gemma4Unified => "gemma4_unified",
        }
    }

    /// Checkpoint keys -> decoder keys (`embed_tokens`, `layers.{i}.*`, `norm`); every other key
    /// of the file (towers, projections, tokenizer, sidecars) is left out.
    pub fn llm_key_ops(self) -> SDOps {
        match self {
            Self::Gemma3 => gemma_llm_key_ops(),
            Self::Gemma4Unified => gemma4_llm_key_ops(),
        }
    }
}

/// The text decoder's config, per family.
#[derive(Clone, Debug)]
pub enum GemmaTextConfig {
    Gemma3(Gemma3TextConfig),
    Gemma4(Gemma4TextConfig),
}

impl GemmaTextConfig {
    /// Width and depth of the decoder (what the feature extractor aggregates).
    pub fn dims(&self) -> GemmaDims {
        let (hidden_size, num_hidden_layers) = match self {
            Self::Gemma3(c) => (c.hidden_size, c.num_hidden_layers),
            Self::Gemma4(c) => (c.hidden_size, c.num_hidden_layers),
        };
        GemmaDims {
            hidden_size,
            num_hidden_layers,
        }
    }
}

/// A Gemma text encoder's assets (`GemmaAssets`), all but the weights read into memory.
///
/// Where a root folder differs from the reference's `GemmaAssets.from_root`: the reference needs
/// `config.json`, `tokenizer_config.json` and `processor_config.json` in every root. ltx-rs keeps
/// taking Gemma-3 roots without them, as it did before: without `config.json` the root is the 12B
/// Gemma-3 the reference used to hard-code (a `config.json` without `model_type` is Gemma-3 too);
/// without `tokenizer_config.json` the special tokens are Gemma's (`<bos>`, `<pad>`); the
/// processor config is only needed by the image processor of prompt enhancement with an image,
/// which is not ported. Packed files are checked exactly as the reference checks them.
#[derive(Clone)]
pub struct GemmaAssets {
    source: PathBuf,
    /// `None`: a root without `config.json`.
    config: Option<Value>,
    family: GemmaFamily,
    text_config: GemmaTextConfig,
    tokenizer_json: Vec<u8>,
    sidecars: BTreeMap<String, Vec<u8>>,
    weight_paths: Vec<PathBuf>,
}

impl std::fmt::Debug for GemmaAssets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GemmaAssets")
            .field("source", &self.source)
            .field("model_type", &self.model_type())
            .field("sidecars", &self.sidecars.keys().collect::<Vec<_>>())
            .field("weight_paths", &self.weight_paths)
            .finish()
    }
}

impl GemmaAssets {
    /// From a root folder or a packed `.safetensors` text-encoder file.
    pub fn load(path: &Path) -> Result<Self> {
        if path.is_dir() {
            Self::from_root(path)
        } else if path.is_file() && path.extension().is_some_and(|e| e == "safetensors") {
            Self::from_single_file(path)
        } else {
            Err(GemmaError::NotFound {
                path: path.to_path_buf(),
            }
            .into())
        }
    }

    /// A Hugging Face root (flat or nested): the first `tokenizer.json` and `config.json` found
    /// (depth first, names sorted), every `*.json` / `*.jinja` sidecar (the first of each name),
    /// every `.safetensors` shard (all `n` of a `-of-n` set).
    pub fn from_root(root: &Path) -> Result<Self> {
        let mut files = Vec::new();
        walk(root, &mut files)?;
        let named = |name: &str| {
            files
                .iter()
                .find(|p| p.file_name().is_some_and(|n| n == name))
        };
        let tokenizer = named("tokenizer.json").ok_or_else(|| GemmaError::MissingTokenizer {
            path: root.to_path_buf(),
            what: "tokenizer.json",
        })?;
        let config = match named("config.json") {
            Some(p) => Some(parse_json(&read(p)?, p, "config.json")?),
            None => None,
        };
        let mut sidecars = BTreeMap::new();
        for p in &files {
            let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
            if SIDECAR_EXTENSIONS.contains(&ext)
                && !NOT_SIDECARS.contains(&name)
                && !sidecars.contains_key(name)
            {
                sidecars.insert(name.to_string(), read(p)?);
            }
        }
        let model_type = config
            .as_ref()
            .and_then(|c| c.get("model_type"))
            .and_then(Value::as_str)
            .unwrap_or("gemma3");
        let family = GemmaFamily::from_model_type(root, model_type)?;
        let text_config = text_config(family, config.as_ref(), root)?;
        Ok(Self {
            source: root.to_path_buf(),
            config,
            family,
            text_config,
            tokenizer_json: read(tokenizer)?,
            sidecars,
            weight_paths: root_shards(root, &files)?,
        })
    }

    /// A packed text-encoder file (`GemmaAssets.from_single_file`).
    pub fn from_single_file(path: &Path) -> Result<Self> {
        let mut file = PackedFile::open(path)?;
        let meta = file.header.metadata().clone().unwrap_or_default();
        let raw = meta
            .get(GEMMA_CONFIG_METADATA_KEY)
            .ok_or_else(|| GemmaError::MissingConfig {
                path: path.to_path_buf(),
            })?;
        let config = parse_json(
            raw.as_bytes(),
            path,
            &format!("metadata `{GEMMA_CONFIG_METADATA_KEY}`"),
        )?;
        if file.header.info(TOKENIZER_JSON_TENSOR_KEY).is_none() {
            return Err(GemmaError::MissingTokenizer {
                path: path.to_path_buf(),
                what: "`tokenizer_json` tensor",
            }
            .into());
        }
        let tokenizer_json = file.bytes(TOKENIZER_JSON_TENSOR_KEY)?;
        let mut names: Vec<String> = file.header.tensors().into_keys().collect();
        names.sort();
        let mut sidecars = BTreeMap::new();
        for key in names {
            if let Some(name) = key.strip_prefix(HF_ASSET_TENSOR_PREFIX) {
                sidecars.insert(name.to_string(), file.bytes(&key)?);
            }
        }
        for name in METADATA_FALLBACK_SIDECARS {
            if let (false, Some(text)) = (sidecars.contains_key(name), meta.get(name)) {
                sidecars.insert(name.to_string(), text.as_bytes().to_vec());
            }
        }
        let missing: Vec<&str> = REQUIRED_SIDECARS
            .into_iter()
            .filter(|n| !sidecars.contains_key(*n))
            .collect();
        if !missing.is_empty() {
            return Err(GemmaError::MissingSidecars {
                path: path.to_path_buf(),
                names: missing.join(", "),
            }
            .into());
        }
        let model_type = config
            .get("model_type")
            .and_then(Value::as_str)
            .unwrap_or("(none)");
        let family = GemmaFamily::from_model_type(path, model_type)?;
        let text_config = text_config(family, Some(&config), path)?;
        Ok(Self {
            source: path.to_path_buf(),
            config: Some(config),
            family,
            text_config,
            tokenizer_json,
            sidecars,
            weight_paths: vec![path.to_path_buf()],
        })
    }

    /// The folder or file the assets came from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    pub fn family(&self) -> GemmaFamily {
        self.family
    }

    /// `gemma3` or `gemma4_unified`.
    pub fn model_type(&self) -> &'static str {
        self.family.model_type()
    }

    /// The config's top-level `gemma_version` (e.g. `gemma4-12b-ltx-v1`), which LTX-2.5
    /// transformers name in their `gemma_source_checkpoint`.
    pub fn gemma_version(&self) -> Option<&str> {
        self.config.as_ref()?.get("gemma_version")?.as_str()
    }

    /// The Hugging Face config; `None` for a Gemma-3 root without `config.json`.
    pub fn config_json(&self) -> Option<&Value> {
        self.config.as_ref()
    }

    pub fn text_config(&self) -> &GemmaTextConfig {
        &self.text_config
    }

    /// Width and depth of the text decoder.
    pub fn dims(&self) -> GemmaDims {
        self.text_config.dims()
    }

    /// The files holding the decoder's weights.
    pub fn weight_paths(&self) -> &[PathBuf] {
        &self.weight_paths
    }

    /// The bytes of `tokenizer.json`.
    pub fn tokenizer_json(&self) -> &[u8] {
        &self.tokenizer_json
    }

    /// The bytes of sidecar `name` (e.g. `tokenizer_config.json`).
    pub fn sidecar(&self, name: &str) -> Option<&[u8]> {
        self.sidecars.get(name).map(Vec::as_slice)
    }

    /// Sidecar `name` parsed as JSON (`None` when absent).
    pub fn sidecar_json(&self, name: &str) -> Result<Option<Value>> {
        self.sidecar(name)
            .map(|bytes| parse_json(bytes, &self.source, &format!("sidecar `{name}`")))
            .transpose()
    }

    /// `generation_config.json` (prompt enhancement reads its sampling settings); an unparseable
    /// one is ignored with a warning.
    pub fn generation_config(&self) -> Option<Value> {
        match self.sidecar_json("generation_config.json") {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("{e}: ignored");
                None
            }
        }
    }
}

/// The family's text config from the Hugging Face config (a Gemma-3 root without one: the 12B's).
fn text_config(
    family: GemmaFamily,
    config: Option<&Value>,
    path: &Path,
) -> Result<GemmaTextConfig> {
    Ok(match (family, config) {
        (GemmaFamily::Gemma3, Some(c)) => GemmaTextConfig::Gemma3(Gemma3TextConfig::from_json(c)?),
        (GemmaFamily::Gemma3, None) => GemmaTextConfig::Gemma3(Gemma3TextConfig::default()),
        (GemmaFamily::Gemma4Unified, Some(c)) => {
            GemmaTextConfig::Gemma4(Gemma4TextConfig::from_gemma_config(c)?)
        }
        (GemmaFamily::Gemma4Unified, None) => {
            return Err(Error::InvalidConfig(format!(
                "`{}`: a Gemma-4 text encoder needs its config",
                path.display()
            )))
        }
    })
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_json(bytes: &[u8], path: &Path, what: &str) -> Result<Value> {
    serde_json::from_slice(bytes).map_err(|e| {
        GemmaError::InvalidJson {
            path: path.to_path_buf(),
            what: what.to_string(),
            reason: e.to_string(),
        }
        .into()
    })
}

/// Every file under `dir`, depth first, each folder's entries sorted by name.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

/// A root's `.safetensors` files; a sharded checkpoint names them `model-0000i-of-0000n`, and all
/// `n` must be there.
fn root_shards(root: &Path, files: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let shards: Vec<PathBuf> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .cloned()
        .collect();
    if shards.is_empty() {
        return Err(GemmaError::NoWeights {
            path: root.to_path_buf(),
        }
        .into());
    }
    let of = |p: &PathBuf| -> Option<usize> {
        let name = p.file_name()?.to_str()?;
        name.split("-of-")
            .nth(1)?
            .trim_end_matches(".safetensors")
            .parse()
            .ok()
    };
    if let Some(expected) = shards.iter().find_map(of) {
        let found = shards.iter().filter(|p| of(p).is_some()).count();
        if found != expected {
            return Err(GemmaError::MissingShards {
                path: root.to_path_buf(),
                found,
                expected,
            }
            .into());
        }
    }
    Ok(shards)
}

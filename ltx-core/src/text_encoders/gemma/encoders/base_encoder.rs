//! Port of `ltx_core/text_encoders/gemma/encoders/base_encoder.py` (prompt enhancement: `enhance.rs`):
//! Gemma-3 loaded from a Gemma root folder in Hugging Face layout, returning every hidden state of
//! a tokenized prompt.
//!
//! Memory: the 12B decoder is built in the dtype asked for (bf16 on CUDA / Metal: ~24 GB) from the
//! memory-mapped shards, whose pages are released as each weight is copied to the device. It owns
//! its weights, so dropping the encoder (the pipelines do so once the prompts are encoded, before
//! the transformer is built) frees them; only the per-prompt hidden states survive.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};
use crate::loader::{BlockStreamer, SafetensorsFiles, StateDict};
use crate::text_encoders::gemma::config::Gemma3TextConfig;
use crate::text_encoders::gemma::gemma3::{gemma_llm_key_ops, Gemma3DecoderLayer, Gemma3TextModel};
use crate::text_encoders::gemma::tokenizer::{LtxvGemmaTokenizer, DEFAULT_MAX_LENGTH};

/// How the decoder's layers are held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmaLayers {
    /// Every layer built at load.
    Resident,
    /// The first `resident` layers built at load, the others read one ahead of use from the
    /// shards on every forward (`in_memory`: read into host memory once, in their stored dtype,
    /// instead of from the mapped files) and freed after it.
    Streamed { resident: usize, in_memory: bool },
}

/// The key prefix of decoder layer `i` (after [`gemma_llm_key_ops`]).
fn layer_prefix(i: usize) -> String {
    format!("layers.{i}.")
}

/// What a Gemma root's weights take: `(outside the layers in dtype, each layer in dtype, each
/// layer as stored)`, from the shards' headers (nothing is read).
pub fn weight_sizes(root: &Path, dtype: DType) -> Result<(u64, Vec<u64>, Vec<u64>)> {
    let (_, shards, config_path) = find_files(root)?;
    let cfg = read_config(config_path.as_deref())?;
    let files = SafetensorsFiles::open(&shards)?;
    let sd = files.state_dict(&gemma_llm_key_ops())?;
    let layer = |i: usize, d| sd.bytes_where(|k| k.starts_with(&layer_prefix(i)), d);
    let n = cfg.num_hidden_layers;
    Ok((
        sd.bytes_where(|k| !k.starts_with("layers."), Some(dtype)),
        (0..n).map(|i| layer(i, Some(dtype))).collect(),
        (0..n).map(|i| layer(i, None)).collect(),
    ))
}

/// The decoder with its first `resident` layers built now and the others streamed: every weight is
/// checked first (nothing read), so a bad one is refused before the first prompt.
fn streamed_model(
    cfg: &Gemma3TextConfig,
    sd: &Arc<StateDict>,
    (dtype, device): (DType, &Device),
    resident: usize,
    in_memory: bool,
) -> Result<Gemma3TextModel> {
    Gemma3TextModel::new(cfg, sd.checking_var_builder(dtype, device))?;
    let outer = Arc::new(sd.filtered(|k| !k.starts_with("layers.")));
    let layers = sd.filtered(|k| k.starts_with("layers."));
    let layers = Arc::new(match in_memory {
        true => layers.with_prefix_in_memory("layers.")?,
        false => layers,
    });
    let (layer_cfg, build_device) = (cfg.clone(), device.clone());
    let streamer = BlockStreamer {
        stage: Arc::new(move |i| {
            let prefix = layer_prefix(i);
            layers
                .filtered(|k| k.starts_with(&prefix))
                .with_prefix_in_memory(&prefix)
        }),
        build: Arc::new(move |i, staged| {
            let vb = Arc::new(staged).var_builder(dtype, &build_device);
            Ok(Gemma3DecoderLayer::new(
                &layer_cfg,
                i,
                vb.pp("layers").pp(i),
            )?)
        }),
    };
    tracing::info!(
        "text encoder: {resident} of {} decoder layers resident, the others streamed",
        cfg.num_hidden_layers
    );
    Gemma3TextModel::new_streamed(cfg, outer.var_builder(dtype, device), resident, streamer)
}

/// The text config of a root's `config.json` (its `text_config`), else the 12B model's.
fn read_config(config_path: Option<&Path>) -> Result<Gemma3TextConfig> {
    match config_path {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| Error::Io {
                path: p.to_path_buf(),
                source,
            })?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| Error::InvalidConfig(format!("`{}`: {e}", p.display())))?;
            Ok(Gemma3TextConfig::from_json(&v)?)
        }
        None => Ok(Gemma3TextConfig::default()),
    }
}

/// The Gemma text encoder: tokenizer + decoder.
pub struct GemmaTextEncoder {
    pub model: Gemma3TextModel,
    pub tokenizer: LtxvGemmaTokenizer,
    /// The root's `generation_config.json`, when it has one (prompt enhancement reads its
    /// sampling settings).
    pub generation_config: Option<serde_json::Value>,
    device: Device,
}

/// Files of a Gemma root: the first `tokenizer.json` found under it and its safetensors shards.
fn find_files(root: &Path) -> Result<(PathBuf, Vec<PathBuf>, Option<PathBuf>)> {
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
    let mut files = Vec::new();
    walk(root, &mut files)?;
    let named = |name: &str| {
        files
            .iter()
            .find(|p| p.file_name().is_some_and(|n| n == name))
            .cloned()
    };
    let tokenizer = named("tokenizer.json").ok_or_else(|| {
        Error::InvalidInput(format!(
            "Gemma root `{}` has no tokenizer.json",
            root.display()
        ))
    })?;
    let shards: Vec<PathBuf> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .cloned()
        .collect();
    if shards.is_empty() {
        return Err(Error::InvalidInput(format!(
            "Gemma root `{}` has no .safetensors weights",
            root.display()
        )));
    }
    // a sharded checkpoint names its shards "model-0000i-of-0000n": all n must be there
    if let Some(n) = shards.iter().find_map(|p| {
        let name = p.file_name()?.to_str()?;
        let of = name.split("-of-").nth(1)?;
        of.trim_end_matches(".safetensors").parse::<usize>().ok()
    }) {
        let found = shards
            .iter()
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.contains("-of-"))
            })
            .count();
        if found != n {
            return Err(Error::InvalidInput(format!(
                "Gemma root `{}` has {found} of its {n} weight shards",
                root.display()
            )));
        }
    }
    Ok((tokenizer, shards, named("config.json")))
}

impl GemmaTextEncoder {
    /// Loads tokenizer and decoder from a Gemma root (e.g. a download of
    /// `google/gemma-3-12b-it-qat-q4_0-unquantized`). The reference hard-codes the 12B config; a
    /// `config.json` in the root (its `text_config`) is used when present so smaller Gemma-3 models
    /// load too. The vision tower is never read.
    pub fn from_root(root: &Path, dtype: DType, device: &Device) -> Result<Self> {
        Self::from_root_with(root, dtype, device, GemmaLayers::Resident)
    }

    /// [`Self::from_root`] with the decoder layers held as `layers` says.
    pub fn from_root_with(
        root: &Path,
        dtype: DType,
        device: &Device,
        layers: GemmaLayers,
    ) -> Result<Self> {
        let (tokenizer_path, shards, config_path) = find_files(root)?;
        let cfg_dir = config_path
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf);
        let cfg = read_config(config_path.as_deref())?;
        let files = SafetensorsFiles::open(&shards)?;
        let sd = Arc::new(files.state_dict(&gemma_llm_key_ops())?);
        let model = match layers {
            GemmaLayers::Resident => {
                let model = Gemma3TextModel::new(&cfg, sd.var_builder(dtype, device))?;
                sd.report_unused("gemma");
                model
            }
            GemmaLayers::Streamed {
                resident,
                in_memory,
            } => streamed_model(&cfg, &sd, (dtype, device), resident, in_memory)?,
        };
        drop((sd, files));
        // next to config.json, else at the root
        let generation_config = [
            cfg_dir.map(|d| d.join("generation_config.json")),
            Some(root.join("generation_config.json")),
        ]
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
        .and_then(|p| {
            let parsed = std::fs::read_to_string(&p)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok());
            if parsed.is_none() {
                tracing::warn!(path = %p.display(), "unreadable generation_config.json ignored");
            }
            parsed
        });
        Ok(Self {
            model,
            tokenizer: LtxvGemmaTokenizer::from_file(&tokenizer_path, DEFAULT_MAX_LENGTH)?,
            generation_config,
            device: device.clone(),
        })
    }

    /// The device the decoder runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Every hidden state `[1, T, hidden]` of `text` and its attention mask `[1, T]` (u32).
    pub fn encode(&self, text: &str) -> Result<(Vec<Tensor>, Tensor)> {
        let t = self.tokenizer.tokenize(text)?;
        let n = t.input_ids.len();
        let ids = Tensor::from_vec(t.input_ids, (1, n), &self.device)?;
        let mask = Tensor::from_vec(t.attention_mask, (1, n), &self.device)?;
        let states = self.model.forward(&ids, &mask)?;
        Ok((states, mask))
    }

    /// [`Self::encode`] with the states stacked as `[1, T, hidden, layers + 1]` (the feature
    /// extractors' input).
    pub fn encode_stacked(&self, text: &str) -> Result<(Tensor, Tensor)> {
        let (states, mask) = self.encode(text)?;
        Ok((Tensor::stack(&states, 3)?, mask))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::loader::synthetic::{random_weights, save_safetensors};

    const TOKENIZER: &str = r#"{"version":"1.0","truncation":null,"padding":null,
      "added_tokens":[{"id":0,"content":"<pad>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true},
                      {"id":2,"content":"<bos>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}],
      "normalizer":null,"pre_tokenizer":{"type":"Whitespace"},
      "post_processor":{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<bos>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}],
        "pair":[{"Sequence":{"id":"A","type_id":0}}],"special_tokens":{"<bos>":{"id":"<bos>","ids":[2],"tokens":["<bos>"]}}},
      "decoder":null,
      "model":{"type":"WordLevel","vocab":{"<pad>":0,"<eos>":1,"<bos>":2,"<unk>":3,"a":4,"cat":5,"walks":6},"unk_token":"<unk>"}}"#;

    fn tiny_config() -> serde_json::Value {
        serde_json::json!({"text_config": {"vocab_size": 7, "hidden_size": 8, "intermediate_size": 16,
            "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 4,
            "query_pre_attn_scalar": 4, "sliding_window": 2}})
    }

    #[test]
    fn loads_a_gemma_root_and_reports_missing_files() -> Result<()> {
        let root = std::env::temp_dir().join(format!("ltx-gemma-root-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let err = GemmaTextEncoder::from_root(&root, DType::F32, &Device::Cpu)
            .err()
            .unwrap();
        assert!(err.to_string().contains("tokenizer.json"), "{err}");
        std::fs::write(root.join("tokenizer.json"), TOKENIZER).unwrap();
        std::fs::write(root.join("config.json"), tiny_config().to_string()).unwrap();
        let err = GemmaTextEncoder::from_root(&root, DType::F32, &Device::Cpu)
            .err()
            .unwrap();
        assert!(err.to_string().contains("no .safetensors"), "{err}");
        let cfg = Gemma3TextConfig::from_json(&tiny_config())?;
        let weights = random_weights(5, DType::F32, "language_model.model.", |vb| {
            Gemma3TextModel::new(&cfg, vb).map_err(Error::from)
        })?;
        save_safetensors(
            &root.join("model-00001-of-00002.safetensors"),
            &weights,
            HashMap::new(),
        )?;
        let err = GemmaTextEncoder::from_root(&root, DType::F32, &Device::Cpu)
            .err()
            .unwrap();
        assert!(err.to_string().contains("1 of its 2"), "{err}");
        std::fs::rename(
            root.join("model-00001-of-00002.safetensors"),
            root.join("model.safetensors"),
        )
        .unwrap();
        let enc = GemmaTextEncoder::from_root(&root, DType::F32, &Device::Cpu)?;
        let (states, mask) = enc.encode_stacked("  a cat walks ")?;
        assert_eq!(states.dims(), &[1, DEFAULT_MAX_LENGTH, 8, 3]);
        let m = mask.flatten_all()?.to_vec1::<u32>()?;
        assert_eq!(m.iter().sum::<u32>(), 4); // <bos> a cat walks, left padded
        assert_eq!(m[DEFAULT_MAX_LENGTH - 1], 1);
        let _ = std::fs::remove_dir_all(&root);
        Ok(())
    }
}

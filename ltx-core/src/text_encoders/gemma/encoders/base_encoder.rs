//! Port of `ltx_core/text_encoders/gemma/encoders/base_encoder.py` (prompt enhancement: `enhance.rs`):
//! the Gemma text encoder (tokenizer + text decoder) loaded from a Gemma root folder or a packed
//! text-encoder file ([`GemmaAssets`]), returning every hidden state of a tokenized prompt.
//! Gemma-3 (`gemma3`, LTX-2 / 2.3) and Gemma-4 unified (`gemma4_unified`, LTX-2.5) are chosen
//! by the config's `model_type`, as 1.2.0's `get_gemma_ops` chooses them.
//!
//! Memory: the decoder (12B: ~24 GB in bf16) is built in the dtype asked for from the
//! memory-mapped weights, whose pages are released as each weight is copied to the device. It
//! owns its weights, so dropping the encoder (the pipelines do so once the prompts are encoded,
//! before the transformer is built) frees them; only the per-prompt hidden states survive.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::error::Result;
use crate::loader::{BlockStreamer, SafetensorsFiles, StateDict};
use crate::text_encoders::gemma::assets::{GemmaAssets, GemmaFamily, GemmaTextConfig};
use crate::text_encoders::gemma::config::Gemma3TextConfig;
use crate::text_encoders::gemma::gemma3::{Gemma3DecoderLayer, Gemma3TextModel};
use crate::text_encoders::gemma::gemma4::{Gemma4DecoderLayer, Gemma4TextConfig, Gemma4TextModel};
use crate::text_encoders::gemma::tokenizer::{LtxvGemmaTokenizer, DEFAULT_MAX_LENGTH};

/// How the decoder's layers are held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmaLayers {
    /// Every layer built at load.
    Resident,
    /// The first `resident` layers built at load, the others read one ahead of use from the
    /// weight files on every forward (`in_memory`: read into host memory once, in their stored
    /// dtype, instead of from the mapped files) and freed after it.
    Streamed { resident: usize, in_memory: bool },
}

/// The key prefix of decoder layer `i` (after the family's key ops).
fn layer_prefix(i: usize) -> String {
    format!("layers.{i}.")
}

/// What the loader needs of one family's text decoder.
trait Decoder: Sized {
    type Config: Clone + Send + Sync + 'static;
    type Layer: 'static;
    fn num_layers(cfg: &Self::Config) -> usize;
    fn build(cfg: &Self::Config, vb: VarBuilder) -> Result<Self>;
    /// Layer `i` from `vb` (its own prefix, `layers.{i}`).
    fn build_layer(cfg: &Self::Config, i: usize, vb: VarBuilder) -> Result<Self::Layer>;
    fn build_streamed(
        cfg: &Self::Config,
        vb: VarBuilder,
        resident: usize,
        streamer: BlockStreamer<Self::Layer>,
    ) -> Result<Self>;
}

impl Decoder for Gemma3TextModel {
    type Config = Gemma3TextConfig;
    type Layer = Gemma3DecoderLayer;
    fn num_layers(cfg: &Self::Config) -> usize {
        cfg.num_hidden_layers
    }
    fn build(cfg: &Self::Config, vb: VarBuilder) -> Result<Self> {
        Ok(Self::new(cfg, vb)?)
    }
    fn build_layer(cfg: &Self::Config, i: usize, vb: VarBuilder) -> Result<Self::Layer> {
        Ok(Gemma3DecoderLayer::new(cfg, i, vb)?)
    }
    fn build_streamed(
        cfg: &Self::Config,
        vb: VarBuilder,
        resident: usize,
        streamer: BlockStreamer<Self::Layer>,
    ) -> Result<Self> {
        Self::new_streamed(cfg, vb, resident, streamer)
    }
}

impl Decoder for Gemma4TextModel {
    type Config = Gemma4TextConfig;
    type Layer = Gemma4DecoderLayer;
    fn num_layers(cfg: &Self::Config) -> usize {
        cfg.num_hidden_layers
    }
    fn build(cfg: &Self::Config, vb: VarBuilder) -> Result<Self> {
        Self::new(cfg, vb)
    }
    fn build_layer(cfg: &Self::Config, i: usize, vb: VarBuilder) -> Result<Self::Layer> {
        Gemma4DecoderLayer::new(cfg, i, vb)
    }
    fn build_streamed(
        cfg: &Self::Config,
        vb: VarBuilder,
        resident: usize,
        streamer: BlockStreamer<Self::Layer>,
    ) -> Result<Self> {
        Self::new_streamed(cfg, vb, resident, streamer)
    }
}

/// The decoder with its layers held as `layers` says. Streamed: every weight is checked first
/// (nothing read), so a bad one is refused before the first prompt.
fn build_decoder<M: Decoder>(
    cfg: &M::Config,
    sd: &Arc<StateDict>,
    (dtype, device): (DType, &Device),
    layers: GemmaLayers,
) -> Result<M> {
    let (resident, in_memory) = match layers {
        GemmaLayers::Resident => {
            let model = M::build(cfg, sd.var_builder(dtype, device))?;
            sd.report_unused("gemma");
            return Ok(model);
        }
        GemmaLayers::Streamed {
            resident,
            in_memory,
        } => (resident, in_memory),
    };
    M::build(cfg, sd.checking_var_builder(dtype, device))?;
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
            M::build_layer(&layer_cfg, i, vb.pp("layers").pp(i))
        }),
    };
    tracing::info!(
        "text encoder: {resident} of {} decoder layers resident, the others streamed",
        M::num_layers(cfg)
    );
    M::build_streamed(cfg, outer.var_builder(dtype, device), resident, streamer)
}

/// The decoder's weights (after the family's key ops: the LM only, never the towers, the LTX
/// projection or the tokenizer / sidecar tensors of a packed file).
fn decoder_weights(assets: &GemmaAssets) -> Result<Arc<StateDict>> {
    let files = SafetensorsFiles::open(assets.weight_paths())?;
    Ok(Arc::new(files.state_dict(&assets.family().llm_key_ops())?))
}

/// What a text encoder's decoder weights take, from the files' headers (nothing is read):
/// `(outside the layers in dtype, each layer in dtype, each layer as stored)`. `path`: a Gemma
/// root folder or a packed text-encoder file.
pub fn weight_sizes(path: &Path, dtype: DType) -> Result<(u64, Vec<u64>, Vec<u64>)> {
    let assets = GemmaAssets::load(path)?;
    let sd = decoder_weights(&assets)?;
    let layer = |i: usize, d| sd.bytes_where(|k| k.starts_with(&layer_prefix(i)), d);
    let n = assets.dims().num_hidden_layers;
    Ok((
        sd.bytes_where(|k| !k.starts_with("layers."), Some(dtype)),
        (0..n).map(|i| layer(i, Some(dtype))).collect(),
        (0..n).map(|i| layer(i, None)).collect(),
    ))
}

/// The text decoder of either family.
pub enum GemmaModel {
    Gemma3(Gemma3TextModel),
    Gemma4(Gemma4TextModel),
}

impl GemmaModel {
    pub fn family(&self) -> GemmaFamily {
        match self {
            Self::Gemma3(_) => GemmaFamily::Gemma3,
            Self::Gemma4(_) => GemmaFamily::Gemma4Unified,
        }
    }

    /// `input_ids` `[B, T]`, `attention_mask` `[B, T]` (1 = token) -> `num_hidden_layers + 1`
    /// hidden states `[B, T, hidden]`.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Vec<Tensor>> {
        match self {
            Self::Gemma3(m) => m.forward(input_ids, attention_mask),
            Self::Gemma4(m) => m.forward(input_ids, attention_mask),
        }
    }
}

/// The Gemma text encoder: tokenizer + decoder.
pub struct GemmaTextEncoder {
    pub model: GemmaModel,
    pub tokenizer: LtxvGemmaTokenizer,
    /// The assets' `generation_config.json`, when they have one (prompt enhancement reads its
    /// sampling settings).
    pub generation_config: Option<serde_json::Value>,
    source: PathBuf,
    device: Device,
}

impl GemmaTextEncoder {
    /// Loads tokenizer and decoder from a Gemma root folder (e.g. a download of
    /// `google/gemma-3-12b-it-qat-q4_0-unquantized`) or a packed text-encoder file (LTX-2.5's
    /// `gemma4-12b-with-proj-ltx-2.5-bf16.safetensors`), the decoder layers held as `layers` says.
    /// The vision and audio towers are never read.
    pub fn load(path: &Path, dtype: DType, device: &Device, layers: GemmaLayers) -> Result<Self> {
        Self::from_assets(&GemmaAssets::load(path)?, dtype, device, layers)
    }

    /// [`Self::load`] from assets already read.
    pub fn from_assets(
        assets: &GemmaAssets,
        dtype: DType,
        device: &Device,
        layers: GemmaLayers,
    ) -> Result<Self> {
        let tokenizer = LtxvGemmaTokenizer::from_assets(assets, DEFAULT_MAX_LENGTH)?;
        let sd = decoder_weights(assets)?;
        let on = (dtype, device);
        let model = match assets.text_config() {
            GemmaTextConfig::Gemma3(cfg) => {
                GemmaModel::Gemma3(build_decoder(cfg, &sd, on, layers)?)
            }
            GemmaTextConfig::Gemma4(cfg) => {
                GemmaModel::Gemma4(build_decoder(cfg, &sd, on, layers)?)
            }
        };
        Ok(Self {
            model,
            tokenizer,
            generation_config: assets.generation_config(),
            source: assets.source().to_path_buf(),
            device: device.clone(),
        })
    }

    /// The folder or file the encoder was loaded from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    pub fn family(&self) -> GemmaFamily {
        self.model.family()
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
    use crate::error::Error;
    use crate::loader::synthetic::{random_weights, save_safetensors};
    use crate::text_encoders::gemma::assets::test_files::*;
    use crate::text_encoders::gemma::assets::{GemmaError, GEMMA_CONFIG_METADATA_KEY};

    fn tiny_config() -> serde_json::Value {
        serde_json::json!({"text_config": {"vocab_size": 7, "hidden_size": 8, "intermediate_size": 16,
            "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 4,
            "query_pre_attn_scalar": 4, "sliding_window": 2}})
    }

    fn resident(path: &Path) -> Result<GemmaTextEncoder> {
        GemmaTextEncoder::load(path, DType::F32, &Device::Cpu, GemmaLayers::Resident)
    }

    fn tempdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ltx-gemma-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn loads_a_gemma_root_and_reports_missing_files() -> Result<()> {
        let root = tempdir("root");
        let err = resident(&root).err().unwrap();
        assert!(err.to_string().contains("tokenizer.json"), "{err}");
        std::fs::write(root.join("tokenizer.json"), tokenizer_json(true)).unwrap();
        std::fs::write(root.join("config.json"), tiny_config().to_string()).unwrap();
        let err = resident(&root).err().unwrap();
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
        let err = resident(&root).err().unwrap();
        assert!(err.to_string().contains("1 of its 2"), "{err}");
        std::fs::rename(
            root.join("model-00001-of-00002.safetensors"),
            root.join("model.safetensors"),
        )
        .unwrap();
        let enc = resident(&root)?;
        assert_eq!(enc.family(), GemmaFamily::Gemma3);
        let (states, mask) = enc.encode_stacked("  a cat walks ")?;
        assert_eq!(states.dims(), &[1, DEFAULT_MAX_LENGTH, 8, 3]);
        let m = mask.flatten_all()?.to_vec1::<u32>()?;
        assert_eq!(m.iter().sum::<u32>(), 4); // <bos> a cat walks, left padded
        assert_eq!(m[DEFAULT_MAX_LENGTH - 1], 1);
        let _ = std::fs::remove_dir_all(&root);
        Ok(())
    }

    /// A packed Gemma-4 text encoder: Comfy-flat LM weights, an LTX projection, the tokenizer
    /// (no BOS post-processor) and the two required sidecars.
    fn packed_gemma4(dir: &Path) -> Result<PathBuf> {
        let path = dir.join("gemma4-te.safetensors");
        let cfg = Gemma4TextConfig::from_gemma_config(&gemma4_config())?;
        let mut weights =
            random_weights(3, DType::F32, "model.", |vb| Gemma4TextModel::new(&cfg, vb))?;
        for key in ["video", "audio"] {
            let w = candle_core::Tensor::zeros((4, 24), DType::F32, &Device::Cpu)?;
            weights.insert(
                format!("text_embedding_projection.{key}_aggregate_embed.weight"),
                w,
            );
        }
        let meta = HashMap::from([(
            GEMMA_CONFIG_METADATA_KEY.to_string(),
            gemma4_config().to_string(),
        )]);
        write_packed(
            &path,
            weights,
            Some(&tokenizer_json(false)),
            &required_sidecars(),
            meta,
        );
        Ok(path)
    }

    #[test]
    fn packed_gemma4_loads_encodes_and_streams() -> Result<()> {
        let dir = tempdir("gemma4");
        let path = packed_gemma4(&dir)?;
        let enc = resident(&path)?;
        assert_eq!(enc.family(), GemmaFamily::Gemma4Unified);
        let (states, mask) = enc.encode_stacked(" a cat walks")?;
        assert_eq!(states.dims(), &[1, DEFAULT_MAX_LENGTH, 8, 3]);
        let ids = enc.tokenizer.tokenize(" a cat walks")?.input_ids;
        assert_eq!(ids[DEFAULT_MAX_LENGTH - 4..], [2, 4, 5, 6]); // the BOS was prepended
        assert_eq!(mask.sum_all()?.to_scalar::<u32>()?, 4);
        let streamed = GemmaTextEncoder::load(
            &path,
            DType::F32,
            &Device::Cpu,
            GemmaLayers::Streamed {
                resident: 1,
                in_memory: true,
            },
        )?;
        let (again, _) = streamed.encode_stacked(" a cat walks")?;
        let diff = (states - again)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert_eq!(diff, 0.0);
        // the projection is not a decoder weight: only embed_tokens + norm outside the layers
        let (outer, layers, stored) = weight_sizes(&path, DType::BF16)?;
        assert_eq!(outer, (7 * 8 + 8) * 2);
        assert_eq!((layers.len(), stored.len()), (2, 2));
        assert_eq!(stored[0], 2 * layers[0]);
        let err = enc.enhance_t2v("a cat", None, 0, |_| {}).err().unwrap();
        assert!(
            matches!(&err, Error::Gemma(GemmaError::CannotGenerate { .. })),
            "{err}"
        );
        assert!(
            err.to_string().contains("--prompt-enhancer-gemma-root"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}

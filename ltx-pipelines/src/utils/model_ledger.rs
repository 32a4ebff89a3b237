//! Port of `ltx_pipelines/utils/model_ledger.py`: builds each component from its file on demand
//! (one checkpoint, or one file per component: [`ModelPaths`]). Nothing is cached: a stage asks
//! for what it needs and drops it when it is done, so peak memory is the largest stage, not the
//! sum. Weights are read from the memory-mapped file and
//! uploaded to the device once, when the component is built.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device};
use ltx_core::loader::sd_ops::ltxv_lora_comfy_renaming_map;
use ltx_core::loader::{
    apply_loras, check_loras, fuse_aggregation_dtype, LoraStateDictWithStrength, SafetensorsFiles,
    StateDict,
};
use ltx_core::model::audio_vae::vocoder::{vocoder_keys_filter, VocoderModel, VocoderModelConfig};
use ltx_core::model::audio_vae::{
    audio_vae_decoder_keys_filter, audio_vae_encoder_keys_filter, AudioDecoder, AudioEncoder,
    AudioVaeConfig,
};
use ltx_core::model::transformer::{
    ltxv_model_comfy_renaming_map, BlockSpec, BlockStreamer, LtxModel, LtxModelConfig,
    LtxModelType, X0Model,
};
use ltx_core::model::upsampler::{LatentUpsampler, LatentUpsamplerConfig};
use ltx_core::model::video_vae::{
    vae_decoder_keys_filter, vae_encoder_keys_filter, VideoDecoder, VideoEncoder, VideoVaeConfig,
};
use ltx_core::quantization::LinearSource;
use ltx_core::text_encoders::gemma::{
    embeddings_processor_key_ops, EmbeddingsProcessor, GemmaAssets, GemmaDims, GemmaLayers,
    GemmaTextEncoder,
};

use super::compatibility::{check_gemma_version, check_same_generation};
use super::duration::DurationPredictor;
use super::model_paths::{Component, ModelPaths};
use super::offload::{host_available_memory, ComponentSize, MemoryPolicy, Offload, Plan};
use crate::{Error, Result};

/// A LoRA file and its strength.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraSpec {
    pub path: PathBuf,
    pub strength: f64,
}

/// Where each component's weights live, and the dtype / device they are built in.
#[derive(Clone, Debug)]
pub struct ModelLedger {
    pub dtype: DType,
    pub device: Device,
    /// The component files (one checkpoint, or LTX-2.5's one file per component).
    pub paths: ModelPaths,
    pub spatial_upsampler: Option<PathBuf>,
    pub loras: Vec<LoraSpec>,
    /// Decode video latents with this instead of the checkpoint's Candle decoder (e.g. a Core ML
    /// package on macOS).
    pub video_decoder_backend: Option<VideoDecoderBackend>,
    /// Offload mode and memory budget of the transformer's blocks and the text encoder's layers
    /// (each planned on its own: the pipelines drop the encoder before building the transformer).
    pub memory: MemoryPolicy,
}

fn is_block_key(key: &str) -> bool {
    key.starts_with("transformer_blocks.")
}

/// The transformer's weights in `dtype`: outside the blocks, per block, and per block as stored.
fn transformer_size(sd: &StateDict, num_layers: usize, dtype: DType) -> ComponentSize {
    let block = |i: usize, d| {
        let prefix = BlockSpec::prefix(i);
        sd.bytes_where(|k| k.starts_with(&prefix), d)
    };
    ComponentSize {
        resident: sd.bytes_where(|k| !is_block_key(k), Some(dtype)),
        blocks: (0..num_layers).map(|i| block(i, Some(dtype))).collect(),
        blocks_stored: (0..num_layers).map(|i| block(i, None)).collect(),
    }
}

/// A shared [`LatentVideoDecoder`] the ledger hands to the decode stage.
#[derive(Clone)]
pub struct VideoDecoderBackend(pub Arc<dyn ltx_core::model::video_vae::LatentVideoDecoder>);

impl std::fmt::Debug for VideoDecoderBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VideoDecoderBackend({})", self.0.name())
    }
}

fn require_file(what: &str, path: &Path) -> Result<()> {
    if !path.is_file() {
        return Err(Error::InvalidArgument(format!(
            "{what} `{}` does not exist or is not a file",
            path.display()
        )));
    }
    Ok(())
}

impl ModelLedger {
    /// A ledger over one monolithic checkpoint (and its Gemma root); every given path is checked
    /// to exist (before any heavy work starts).
    pub fn new(
        dtype: DType,
        device: Device,
        checkpoint: PathBuf,
        gemma_root: Option<PathBuf>,
        spatial_upsampler: Option<PathBuf>,
        loras: Vec<LoraSpec>,
    ) -> Result<Self> {
        let paths = ModelPaths::monolith(checkpoint, gemma_root);
        Self::from_paths(dtype, device, paths, spatial_upsampler, loras)
    }

    /// A ledger over any component layout; every given path is checked to exist.
    pub fn from_paths(
        dtype: DType,
        device: Device,
        paths: ModelPaths,
        spatial_upsampler: Option<PathBuf>,
        loras: Vec<LoraSpec>,
    ) -> Result<Self> {
        paths.check_exist()?;
        if let Some(p) = &spatial_upsampler {
            require_file("spatial upsampler", p)?;
        }
        for l in &loras {
            require_file("LoRA", &l.path)?;
        }
        Ok(Self {
            dtype,
            device,
            paths,
            spatial_upsampler,
            loras,
            video_decoder_backend: None,
            memory: MemoryPolicy::default(),
        })
    }

    /// A ledger with `loras` added (the two-stage pipelines' stage 2 adds the distilled LoRA).
    pub fn with_additional_loras(&self, loras: &[LoraSpec]) -> Result<Self> {
        for l in loras {
            require_file("LoRA", &l.path)?;
        }
        let mut out = self.clone();
        out.loras.extend_from_slice(loras);
        Ok(out)
    }

    /// The file of `component`, opened (memory-mapped, nothing read yet).
    fn open(&self, component: Component) -> Result<SafetensorsFiles> {
        Ok(SafetensorsFiles::open(&[self.paths.get(component)?])?)
    }

    /// The transformer's file: its metadata names the model's generation.
    fn open_transformer(&self) -> Result<SafetensorsFiles> {
        self.open(Component::Transformer)
    }

    fn weights(
        &self,
        files: &SafetensorsFiles,
        ops: &ltx_core::loader::SDOps,
    ) -> Result<Arc<StateDict>> {
        Ok(Arc::new(files.state_dict(ops)?))
    }

    /// The duration predictor of the duration-head file (a monolith's checkpoint itself), or
    /// `None` when it holds no head (files older than LTX-2.5, or a split set without one).
    pub fn duration_predictor(&self) -> Result<Option<DurationPredictor>> {
        let Some(path) = &self.paths.duration_head else {
            return Ok(None);
        };
        let files = SafetensorsFiles::open(&[path])?;
        DurationPredictor::from_files(&files, self.dtype, &self.device)
    }

    /// The checkpoint's parsed `model_version` (`[]` without one).
    pub fn model_version(&self) -> Result<Vec<u32>> {
        Ok(super::constants::checkpoint_model_version(
            &self.open_transformer()?,
        ))
    }

    /// The CRF of conditioning images that name none: the checkpoint generation's.
    pub fn default_image_crf(&self) -> Result<u32> {
        Ok(super::constants::detect_params(&self.open_transformer()?).default_image_crf)
    }

    /// The transformer file's `config` metadata.
    pub fn config(&self) -> Result<serde_json::Value> {
        Ok(self.open_transformer()?.config()?)
    }

    /// The LoRA files of this ledger, opened (memory-mapped, nothing read yet).
    fn lora_state_dicts(&self) -> Result<Vec<StateDict>> {
        self.loras
            .iter()
            .map(|l| {
                let f = SafetensorsFiles::open(&[&l.path])?;
                Ok(f.state_dict(&ltxv_lora_comfy_renaming_map())?)
            })
            .collect()
    }

    /// `loras` paired with this ledger's strengths.
    fn with_strengths<'a>(&self, loras: &'a [StateDict]) -> Vec<LoraStateDictWithStrength<'a>> {
        LoraStateDictWithStrength::pair(loras, &self.strengths())
    }

    fn strengths(&self) -> Vec<f64> {
        self.loras.iter().map(|l| l.strength).collect()
    }

    /// The audio-video transformer wrapped to predict denoised latents.
    /// With LoRAs, their deltas are fused into the weights they touch (in the ledger's dtype); a
    /// LoRA that matches no weight is an error, not a silent no-op. Under an offload policy the
    /// blocks the budget cannot hold are streamed (see [`MemoryPolicy`]).
    pub fn transformer(&self) -> Result<X0Model> {
        let files = self.open_transformer()?;
        let kind = LtxModelType::AudioVideo;
        let cfg = LtxModelConfig::from_checkpoint_config(&files.config()?, kind)?;
        let sd = self.transformer_state_dict(&files)?;
        let loras = self.lora_state_dicts()?;
        let report = check_loras(&sd, &self.with_strengths(&loras))?;
        let all_zero = self.loras.iter().all(|l| l.strength == 0.0);
        for (l, n) in self.loras.iter().zip(&report.matched) {
            if *n == 0 && !all_zero {
                return Err(Error::InvalidArgument(format!(
                    "LoRA `{}` matches no weight of the transformer (expected keys like \
                     `diffusion_model.<module>.lora_A.weight` / `.lora_B.weight`)",
                    l.path.display()
                )));
            }
            tracing::info!(
                "LoRA `{}` (strength {}): {n} weights",
                l.path.display(),
                l.strength
            );
        }
        let model = match self.transformer_plan(&sd, cfg.num_layers)? {
            None => {
                let agg = fuse_aggregation_dtype(&self.device);
                let (fused, _) = apply_loras(
                    &sd,
                    &self.with_strengths(&loras),
                    agg,
                    self.dtype,
                    &self.device,
                )?;
                let sd = Arc::new(sd.with_overrides(fused)?);
                let model = LtxModel::load(&cfg, kind, &sd, self.dtype, &self.device)?;
                sd.report_unused("transformer");
                model
            }
            Some(resident) => self.streamed_transformer(sd, loras, &cfg, resident)?,
        };
        Ok(X0Model {
            velocity_model: model,
        })
    }

    /// How the transformer will be held under the ledger's memory policy (from the checkpoint's
    /// header; nothing is read): an over-budget policy is refused here, before any work.
    pub fn check_memory(&self) -> Result<Plan> {
        let size = self.transformer_size()?;
        self.memory
            .plan("transformer", &size, self.available_memory())
    }

    /// What the transformer's weights take in the ledger's dtype (from the header).
    pub fn transformer_size(&self) -> Result<ComponentSize> {
        let files = self.open_transformer()?;
        let cfg =
            LtxModelConfig::from_checkpoint_config(&files.config()?, LtxModelType::AudioVideo)?;
        let sd = self.transformer_state_dict(&files)?;
        Ok(transformer_size(&sd, cfg.num_layers, self.dtype))
    }

    /// The transformer's weights under the memory policy's quantization.
    fn transformer_state_dict(&self, files: &SafetensorsFiles) -> Result<StateDict> {
        let sd = files.state_dict(&ltxv_model_comfy_renaming_map())?;
        Ok(sd.with_quantization(self.memory.quantization))
    }

    fn available_memory(&self) -> Option<u64> {
        self.device.is_cpu().then(host_available_memory).flatten()
    }

    fn transformer_plan(&self, sd: &StateDict, num_layers: usize) -> Result<Plan> {
        let size = transformer_size(sd, num_layers, self.dtype);
        self.memory
            .plan("transformer", &size, self.available_memory())
    }

    /// The transformer with its first `resident` blocks built now and the others streamed: every
    /// weight is checked first (nothing read), LoRAs are fused into each block as it is built.
    fn streamed_transformer(
        &self,
        sd: StateDict,
        loras: Vec<StateDict>,
        cfg: &LtxModelConfig,
        resident: usize,
    ) -> Result<LtxModel> {
        let kind = LtxModelType::AudioVideo;
        let (dtype, device) = (self.dtype, self.device.clone());
        let sd = Arc::new(sd);
        LtxModel::new(cfg, kind, sd.checking_var_builder(dtype, &device))?;
        let outer = sd.filtered(|k| !is_block_key(k));
        let agg = fuse_aggregation_dtype(&device);
        let (fused, _) = apply_loras(&outer, &self.with_strengths(&loras), agg, dtype, &device)?;
        let outer = Arc::new(outer.with_overrides(fused)?);
        let blocks = sd.filtered(is_block_key);
        let blocks = Arc::new(match self.memory.offload {
            Offload::Cpu => blocks.with_prefix_in_memory("transformer_blocks.")?,
            _ => blocks,
        });
        let strengths = self.strengths();
        let spec = BlockSpec::new(cfg, kind);
        let streamer = BlockStreamer {
            stage: Arc::new(move |i| {
                let prefix = BlockSpec::prefix(i);
                blocks
                    .filtered(|k| k.starts_with(&prefix))
                    .with_prefix_in_memory(&prefix)
            }),
            build: Arc::new(move |i, staged| {
                let with = LoraStateDictWithStrength::pair(&loras, &strengths);
                let (fused, _) = apply_loras(&staged, &with, agg, dtype, &device)?;
                let staged = Arc::new(staged.with_overrides(fused)?);
                let linears = LinearSource::new(&staged);
                Ok(spec.build(i, &staged.var_builder(dtype, &device), &linears)?)
            }),
        };
        tracing::info!(
            "transformer: {resident} of {} blocks resident, the others streamed ({:?})",
            cfg.num_layers,
            self.memory.offload
        );
        let vb = outer.var_builder(self.dtype, &self.device);
        Ok(LtxModel::new_streamed(cfg, kind, vb, resident, streamer)?)
    }

    pub fn video_encoder(&self) -> Result<VideoEncoder> {
        let files = self.open(Component::VideoVae)?;
        let cfg = VideoVaeConfig::from_checkpoint_config(&files.config()?)?;
        let sd = self.weights(&files, &vae_encoder_keys_filter())?;
        let m = VideoEncoder::new(&cfg, sd.var_builder(self.dtype, &self.device))?;
        sd.report_unused("video_encoder");
        Ok(m)
    }

    pub fn video_decoder(&self) -> Result<VideoDecoder> {
        let files = self.open(Component::VideoVae)?;
        let cfg = VideoVaeConfig::from_checkpoint_config(&files.config()?)?;
        let sd = self.weights(&files, &vae_decoder_keys_filter())?;
        let m = VideoDecoder::new(&cfg, sd.var_builder(self.dtype, &self.device))?;
        sd.report_unused("video_decoder");
        Ok(m)
    }

    /// The audio VAE's config, from its own file (the checkpoint, or a split set's audio VAE).
    pub fn audio_vae_config(&self) -> Result<AudioVaeConfig> {
        let files = self.open(Component::AudioVae)?;
        Ok(AudioVaeConfig::from_checkpoint_config(&files.config()?)?)
    }

    pub fn audio_encoder(&self) -> Result<AudioEncoder> {
        let files = self.open(Component::AudioVae)?;
        let cfg = AudioVaeConfig::from_checkpoint_config(&files.config()?)?;
        let sd = self.weights(&files, &audio_vae_encoder_keys_filter())?;
        let m = AudioEncoder::new(&cfg, sd.var_builder(self.dtype, &self.device))?;
        sd.report_unused("audio_encoder");
        Ok(m)
    }

    pub fn audio_decoder(&self) -> Result<AudioDecoder> {
        let files = self.open(Component::AudioVae)?;
        let cfg = AudioVaeConfig::from_checkpoint_config(&files.config()?)?;
        let sd = self.weights(&files, &audio_vae_decoder_keys_filter())?;
        let m = AudioDecoder::new(&cfg, sd.var_builder(self.dtype, &self.device))?;
        sd.report_unused("audio_decoder");
        Ok(m)
    }

    pub fn vocoder(&self) -> Result<VocoderModel> {
        let files = self.open(Component::AudioVae)?;
        let cfg = VocoderModelConfig::from_checkpoint_config(&files.config()?)?;
        let sd = self.weights(&files, &vocoder_keys_filter())?;
        let m = VocoderModel::new(&cfg, sd.var_builder(self.dtype, &self.device))?;
        sd.report_unused("vocoder");
        Ok(m)
    }

    /// The text encoder's path: a Gemma root folder or a single text-encoder file.
    fn text_encoder_path(&self) -> Result<&Path> {
        self.paths.get(Component::TextEncoder)
    }

    /// The text encoder's config, tokenizer and sidecars (headers and the tokenizer read; no
    /// weight).
    pub fn gemma_assets(&self) -> Result<GemmaAssets> {
        Ok(GemmaAssets::load(self.text_encoder_path()?)?)
    }

    /// Width and depth of the Gemma model (from its config; a Gemma-3 root without one: the
    /// 12B's).
    pub fn gemma_dims(&self) -> Result<GemmaDims> {
        Ok(self.gemma_assets()?.dims())
    }

    /// The Gemma text encoder, its decoder layers held as the memory policy plans them (the same
    /// budget and offload mode as the transformer's blocks).
    pub fn text_encoder(&self) -> Result<GemmaTextEncoder> {
        let layers = match self.text_encoder_plan()? {
            None => GemmaLayers::Resident,
            Some(resident) => GemmaLayers::Streamed {
                resident,
                in_memory: self.memory.offload == Offload::Cpu,
            },
        };
        Ok(GemmaTextEncoder::load(
            self.text_encoder_path()?,
            self.dtype,
            &self.device,
            layers,
        )?)
    }

    /// How the text encoder's layers will be held (from the weights' headers; nothing is read):
    /// an over-budget policy is refused here, before any work.
    pub fn text_encoder_plan(&self) -> Result<Plan> {
        let (resident, blocks, blocks_stored) =
            ltx_core::text_encoders::gemma::encoders::weight_sizes(
                self.text_encoder_path()?,
                self.dtype,
            )?;
        let size = ComponentSize {
            resident,
            blocks,
            blocks_stored,
        };
        self.memory
            .plan("text encoder", &size, self.available_memory())
    }

    /// Feature extractor and connectors: from the transformer's file, and in a split set from a
    /// single-file text encoder too (LTX-2.5 bundles its projection with Gemma). The text
    /// encoder is checked against the transformer first.
    pub fn embeddings_processor(&self) -> Result<EmbeddingsProcessor> {
        let assets = self.gemma_assets()?;
        let files = SafetensorsFiles::open(&self.paths.embeddings_weight_paths()?)?;
        check_gemma_version(&files, &assets)?;
        let sd = self.weights(&files, &embeddings_processor_key_ops())?;
        let m = EmbeddingsProcessor::new(
            &files.config()?,
            assets.dims(),
            true,
            sd.var_builder(self.dtype, &self.device),
        )?;
        sd.report_unused("embeddings_processor");
        Ok(m)
    }

    /// The compatibility checks between the given parts, from their headers (before any work):
    /// the text encoder's Gemma version against the transformer's, and each VAE's generation
    /// against the transformer's.
    pub fn check_compatibility(&self) -> Result<()> {
        let transformer = self.open_transformer()?;
        if self.paths.text_encoder.is_some() {
            check_gemma_version(&transformer, &self.gemma_assets()?)?;
        }
        for c in [Component::VideoVae, Component::AudioVae] {
            if let Ok(path) = self.paths.get(c) {
                check_same_generation(&transformer, &SafetensorsFiles::open(&[path])?, c)?;
            }
        }
        Ok(())
    }

    pub fn spatial_upsampler(&self) -> Result<LatentUpsampler> {
        let path = self.spatial_upsampler.as_ref().ok_or_else(|| {
            Error::InvalidArgument(
                "no spatial upsampler given (--spatial-upsampler-path): two-stage pipelines need it"
                    .into(),
            )
        })?;
        let files = SafetensorsFiles::open(&[path])?;
        let cfg = LatentUpsamplerConfig::from_checkpoint_config(&files.config()?)?;
        let sd = Arc::new(files.state_dict(&ltx_core::loader::SDOps::identity())?);
        let m = LatentUpsampler::new(&cfg, sd.var_builder(self.dtype, &self.device))?;
        sd.report_unused("spatial_upsampler");
        Ok(m)
    }
}

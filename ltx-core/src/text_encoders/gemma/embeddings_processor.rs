//! Port of `ltx_core/text_encoders/gemma/embeddings_processor.py`: feature extractor → video and
//! audio connectors → the contexts and mask the transformer takes.

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;
use serde_json::Value;

use super::embeddings_connector::{Embeddings1DConnector, Embeddings1DConnectorConfig};
use super::feature_extractor::{FeatureExtractor, GemmaDims, PaddingSide};
use crate::error::{bad_shape, Result};
use crate::loader::SDOps;
use crate::model::transformer::attention::finfo;

/// The contexts of one prompt batch.
#[derive(Clone, Debug)]
pub struct EmbeddingsProcessorOutput {
    pub video_encoding: Tensor,
    pub audio_encoding: Option<Tensor>,
    /// `[B, T]` (i64): 1 where the video context holds a token.
    pub attention_mask: Tensor,
}

/// Checkpoint keys → module keys of the feature extractor and both connectors.
pub fn embeddings_processor_key_ops() -> SDOps {
    [
        (
            "text_embedding_projection.aggregate_embed.",
            "feature_extractor.aggregate_embed.",
        ),
        (
            "text_embedding_projection.video_aggregate_embed.",
            "feature_extractor.video_aggregate_embed.",
        ),
        (
            "text_embedding_projection.audio_aggregate_embed.",
            "feature_extractor.audio_aggregate_embed.",
        ),
        (
            "model.diffusion_model.video_embeddings_connector.",
            "video_connector.",
        ),
        (
            "model.diffusion_model.audio_embeddings_connector.",
            "audio_connector.",
        ),
    ]
    .into_iter()
    .fold(
        SDOps::new("EMBEDDINGS_PROCESSOR_KEY_OPS"),
        |ops, (from, to)| ops.with_matching(from, "").with_replacement(from, to),
    )
}

/// `(mask − 1)·finfo(dtype).max` as `[B, 1, 1, T]`: 0 for tokens, the most negative value for padding.
pub fn convert_to_additive_mask(attention_mask: &Tensor, dtype: DType) -> Result<Tensor> {
    let (b, t) = attention_mask.dims2()?;
    let max = -finfo(dtype).0;
    let m = attention_mask
        .to_dtype(DType::F64)?
        .affine(1.0, -1.0)?
        .to_dtype(dtype)?;
    let scale = Tensor::new(max, attention_mask.device())?.to_dtype(dtype)?;
    Ok(m.broadcast_mul(&scale)?.reshape((b, 1, 1, t))?)
}

/// Feature extractor + video connector + audio connector.
pub struct EmbeddingsProcessor {
    pub feature_extractor: FeatureExtractor,
    pub video_connector: Embeddings1DConnector,
    pub audio_connector: Option<Embeddings1DConnector>,
}

impl EmbeddingsProcessor {
    /// From a checkpoint config (`{"transformer": {...}}`) and the Gemma model's dimensions.
    pub fn new(config: &Value, dims: GemmaDims, audio: bool, vb: VarBuilder) -> Result<Self> {
        let t = config.get("transformer").cloned().unwrap_or(Value::Null);
        let video_cfg = Embeddings1DConnectorConfig::from_transformer_config(&t, false)?;
        let audio_connector = if audio {
            let c = Embeddings1DConnectorConfig::from_transformer_config(&t, true)?;
            Some(Embeddings1DConnector::new(&c, vb.pp("audio_connector"))?)
        } else {
            None
        };
        Ok(Self {
            feature_extractor: FeatureExtractor::new(&t, dims, vb.pp("feature_extractor"))?,
            video_connector: Embeddings1DConnector::new(&video_cfg, vb.pp("video_connector"))?,
            audio_connector,
        })
    }

    /// Features and an additive mask -> contexts; the video context is zeroed where the connector's
    /// mask is not ~0.
    pub fn create_embeddings(
        &self,
        video_features: &Tensor,
        audio_features: Option<&Tensor>,
        additive_mask: &Tensor,
    ) -> Result<EmbeddingsProcessorOutput> {
        let (video, video_mask) = self
            .video_connector
            .forward(video_features, additive_mask)?;
        let (b, t, _) = video.dims3()?;
        let small = Tensor::new(1e-6f64, video.device())?.to_dtype(video_mask.dtype())?;
        let binary = video_mask
            .broadcast_lt(&small)?
            .to_dtype(DType::I64)?
            .reshape((b, t, 1))?;
        let video = video.broadcast_mul(&binary.to_dtype(video.dtype())?)?;
        let audio = match (&self.audio_connector, audio_features) {
            (Some(c), Some(f)) => Some(c.forward(f, additive_mask)?.0),
            (None, None) => None,
            (Some(_), None) => {
                return Err(crate::Error::InvalidInput(
                    "the audio connector needs audio features".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(crate::Error::InvalidInput(
                    "audio features given but no audio connector is configured".into(),
                ))
            }
        };
        Ok(EmbeddingsProcessorOutput {
            video_encoding: video,
            audio_encoding: audio,
            attention_mask: binary.squeeze(2)?,
        })
    }

    /// Gemma hidden states `[B, T, D, L]` and the tokenizer's mask `[B, T]` -> contexts.
    pub fn process_hidden_states(
        &self,
        hidden_states: &Tensor,
        attention_mask: &Tensor,
        padding_side: PaddingSide,
    ) -> Result<EmbeddingsProcessorOutput> {
        let dims = hidden_states.dims();
        if dims.len() != 4 || attention_mask.dims() != &dims[..2] {
            return Err(bad_shape(
                "Gemma hidden states",
                dims,
                format!(
                    "[B, T, hidden, layers] matching the mask {:?}",
                    attention_mask.dims()
                ),
            ));
        }
        let (video, audio) =
            self.feature_extractor
                .forward(hidden_states, attention_mask, padding_side)?;
        let additive = convert_to_additive_mask(attention_mask, video.dtype())?;
        let audio = self.audio_connector.as_ref().map(|_| audio);
        self.create_embeddings(&video, audio.as_ref(), &additive)
    }
}

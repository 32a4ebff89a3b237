//! Port of `ltx_core/text_encoders/gemma/`.

pub mod embeddings_connector;
pub mod embeddings_processor;
pub mod feature_extractor;

pub use embeddings_connector::{Embeddings1DConnector, Embeddings1DConnectorConfig};
pub use embeddings_processor::{
    embeddings_processor_key_ops, EmbeddingsProcessor, EmbeddingsProcessorOutput,
};
pub use feature_extractor::{FeatureExtractor, GemmaDims, PaddingSide};

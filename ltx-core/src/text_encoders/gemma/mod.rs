//! Port of `ltx_core/text_encoders/gemma/`.

pub mod assets;
pub mod config;
pub mod embeddings_connector;
pub mod embeddings_processor;
pub mod encoders;
pub mod feature_extractor;
pub mod gemma3;
pub mod gemma4;
pub mod tokenizer;

pub use assets::{GemmaAssets, GemmaError, GemmaFamily, GemmaTextConfig};
pub use config::Gemma3TextConfig;
pub use embeddings_connector::{Embeddings1DConnector, Embeddings1DConnectorConfig};
pub use embeddings_processor::{
    embeddings_processor_key_ops, EmbeddingsProcessor, EmbeddingsProcessorOutput,
};
pub use encoders::{
    clean_response, GemmaLayers, GemmaModel, GemmaTextEncoder, SampleRng, SamplingConfig,
    DEFAULT_T2V_SYSTEM_PROMPT,
};
pub use feature_extractor::{FeatureExtractor, GemmaDims, PaddingSide};
pub use gemma3::{gemma_llm_key_ops, Gemma3DecoderLayer, Gemma3TextModel, GemmaKvCache};
pub use gemma4::{gemma4_llm_key_ops, Gemma4DecoderLayer, Gemma4TextConfig, Gemma4TextModel};
pub use tokenizer::{read_prompt_file, LtxvGemmaTokenizer, TokenizedPrompt};

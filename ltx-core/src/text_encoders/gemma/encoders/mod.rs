//! Port of `ltx_core/text_encoders/gemma/encoders/`.

pub mod base_encoder;
pub mod enhance;

pub use base_encoder::{weight_sizes, GemmaLayers, GemmaModel, GemmaTextEncoder};
pub use enhance::{clean_response, SampleRng, SamplingConfig, DEFAULT_T2V_SYSTEM_PROMPT};

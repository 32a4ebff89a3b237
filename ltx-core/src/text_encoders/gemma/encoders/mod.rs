//! Port of `ltx_core/text_encoders/gemma/encoders/`.

pub mod base_encoder;

pub use base_encoder::GemmaTextEncoder;

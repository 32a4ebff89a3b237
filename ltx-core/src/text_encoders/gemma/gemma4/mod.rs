//! The Gemma-4 unified (`gemma4_unified`) text encoder of LTX-2.5, as ltx-core 1.2.0 builds it
//! (`encoders/encoder_configurator.py`: `AutoModelForImageTextToText` from the `gemma_config`
//! header, `_build_gemma4_unified_llm_key_ops`, `_create_and_populate_gemma4_unified`) and
//! `LTXGemmaTextEncoder.encode` runs it: every hidden state of the text model.

pub mod config;
pub mod model;

pub use config::{Gemma4LayerType, Gemma4Rope, Gemma4TextConfig, RopeParameters};
pub use model::{gemma4_llm_key_ops, Gemma4DecoderLayer, Gemma4TextModel};

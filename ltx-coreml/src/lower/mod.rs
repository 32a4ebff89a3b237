//! Lowering of the Candle modules to MIL, one file per model family.

pub mod common;
pub mod upsampler;
pub mod video_vae;

//! ltx-core: the LTX-2 (19B) / LTX-2.3 (22B) audio-video diffusion models on Candle.
//!
//! The module tree mirrors the Python package `ltx_core` 1.0.0 one-for-one, so a reader holding
//! a reference file finds its twin at the same path:
//!
//! | Rust module | Python module |
//! |---|---|
//! | [`loader`] | `ltx_core/loader/` (safetensors, key renames, strict loading) |
//! | [`model::video_vae`] | `ltx_core/model/video_vae/` |
//! | [`model::common`] | `ltx_core/model/common/` |
//! | [`model::transformer`] | `ltx_core/model/transformer/` (timestep embeddings so far) |
//! | [`kernels`] | no twin: fast paths for what Candle lacks (Conv3d on CPU) |
//! | [`components`] | `ltx_core/components/` (schedulers, guiders, diffusion steps, noisers, patchifiers) |
//! | [`conditioning`] | `ltx_core/conditioning/` |
//! | [`guidance`] | `ltx_core/guidance/` (perturbations) |
//! | [`types`] | `ltx_core/types.py` (shapes, `LatentState`) |
//! | [`tools`] | `ltx_core/tools.py` (latent tools) |
//! | [`utils`] | `ltx_core/utils.py` (numeric helpers) |
//! | [`device`] | no twin: device / dtype selection shared by every binary |
//! | [`quantization`] | `ltx_core/quantization/` (fp8-cast; GGUF block types) |

pub mod components;
pub mod conditioning;
pub mod device;
pub mod error;
pub mod guidance;
pub mod kernels;
pub mod loader;
pub mod model;
pub mod quantization;
#[cfg(test)]
mod test_utils;
pub mod text_encoders;
pub mod tools;
pub mod types;
pub mod utils;

pub use error::{Error, Result};

#![recursion_limit = "256"]
//! Port of `ltx_pipelines`: the generation pipelines, the model ledger and media IO. The cargo
//! feature `tiny-model` adds the built-in tiny checkpoint (`tiny`) the CLI runs offline.

pub mod a2vid_two_stage;
pub mod distilled;
pub mod error;
pub mod ic_lora;
pub mod iclora_utils;
pub mod keyframe_interpolation;
pub mod media;
pub mod retake;
pub mod ti2vid_one_stage;
pub mod ti2vid_two_stages;
pub mod ti2vid_two_stages_hq;
#[cfg(feature = "tiny-model")]
pub mod tiny;
pub mod utils;

pub use error::{Error, Result};

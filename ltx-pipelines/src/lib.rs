#![recursion_limit = "256"]
//! Port of `ltx_pipelines`: generation pipelines, model ledger and media IO (in progress), plus
//! the parity harness that checks every component against PyTorch-reference fixtures.

pub mod a2vid_two_stage;
pub mod distilled;
pub mod error;
pub mod ic_lora;
pub mod media;
pub mod parity;
pub mod retake;
pub mod ti2vid_one_stage;
pub mod ti2vid_two_stages;
pub mod tiny;
pub mod utils;

pub use error::{Error, Result};

//! Port of `ltx_core/model/`.

pub mod common;
pub mod transformer;
pub mod video_vae;

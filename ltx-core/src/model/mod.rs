//! Port of `ltx_core/model/`.

pub mod audio_vae;
pub mod common;
pub mod duration_head;
pub mod transformer;
pub mod upsampler;
pub mod video_vae;

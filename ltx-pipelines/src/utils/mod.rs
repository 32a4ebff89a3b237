//! Port of `ltx_pipelines/utils/`.

pub mod constants;
pub mod res2s;
pub mod samplers;

//! Port of `ltx_pipelines/utils/` (so far: constants).

pub mod constants;

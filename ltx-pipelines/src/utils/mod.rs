//! Port of `ltx_pipelines/utils/`.

pub mod constants;
pub mod helpers;
pub mod model_ledger;
pub mod res2s;
pub mod samplers;
pub mod stages;

//! Port of `ltx_pipelines/utils/`.

pub mod blocks;
pub mod compatibility;
pub mod constants;
pub mod denoisers;
pub mod duration;
pub mod helpers;
pub mod model_ledger;
pub mod model_paths;
pub mod offload;
pub mod request;
pub mod res2s;
pub mod samplers;
pub mod stages;
pub mod types;

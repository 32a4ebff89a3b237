//! Port of `ltx_core/model/upsampler/`: the latent upsamplers that run between the two stages of
//! the two-stage pipelines (spatial x2, rational spatial x1.5 / x0.75 / x4, temporal x2,
//! spatio-temporal).

pub mod blur_downsample;
pub mod model;
pub mod model_configurator;
pub mod pixel_shuffle;
pub mod res_block;
pub mod spatial_rational_resampler;

pub use model::{upsample_video, LatentUpsampler};
pub use model_configurator::{latent_upsampler_keys, LatentUpsamplerConfig, UpsamplerKind};

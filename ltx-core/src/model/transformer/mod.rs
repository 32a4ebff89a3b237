//! Port of `ltx_core/model/transformer/`: the dual-stream audio-video diffusion transformer
//! (`LTXModel`) of LTX-2 (19B) and LTX-2.3 (22B).

pub mod adaln;
pub mod attention;
pub mod feed_forward;
pub mod modality;
pub mod model;
pub mod model_configurator;
pub mod presets;
pub mod rope;
pub mod text_kv_cache;
pub mod text_projection;
pub mod timestep_embedding;
#[allow(clippy::module_inception)]
pub mod transformer;
pub mod transformer_args;

pub use crate::loader::block_store::{BlockStore, BlockStreamer};
pub use crate::loader::shape_only_var_builder;
pub use modality::Modality;
pub use model::{BlockSpec, LegacyX0Model, LtxModel, X0Model};
pub use model_configurator::{ltxv_model_comfy_renaming_map, LtxModelConfig, LtxModelType};
pub use rope::RopeType;
pub use text_kv_cache::{ContextKey, TextKvCache};

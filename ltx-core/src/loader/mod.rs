//! Port of `ltx_core/loader/`: memory-mapped safetensors, checkpoint config metadata, key
//! renaming ops and strict weight loading.
//!
//! A checkpoint is opened once ([`SafetensorsFiles`]), each component takes its keys through its
//! own [`SDOps`] into a [`StateDict`], and the component is built from a strict
//! [`candle_nn::VarBuilder`] over that state dict: a missing key, a wrong shape or an unusable
//! dtype is a typed [`crate::Error`] naming the key.

pub mod block_store;
pub mod fuse_loras;
pub mod gguf;
pub mod primitives;
pub mod sd_ops;
pub mod sft_loader;
pub mod shape_only;
pub mod synthetic;
mod tensor_source;

pub use block_store::{BlockStore, BlockStreamer};
pub use fuse_loras::{
    apply_loras, check_loras, fuse_aggregation_dtype, LoraFuseReport, LoraStateDictWithStrength,
};
pub use primitives::{StateDict, StoredForm};
pub use sd_ops::SDOps;
pub use sft_loader::SafetensorsFiles;
pub use shape_only::{shape_only_var_builder, ShapeRecord};

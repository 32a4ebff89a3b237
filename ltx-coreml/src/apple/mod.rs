//! Running exported `.mlpackage` models with Apple's Core ML (macOS), for checks and benchmarks.
//!
//! ```ignore
//! use std::path::Path;
//! use ltx_coreml::apple::{median, time_predictions, ComputeUnits, CoreMlModel};
//!
//! let cache = Path::new("target/coreml-cache");
//! let package = Path::new("vae_dec.mlpackage");
//! let (model, times) = CoreMlModel::load(package, ComputeUnits::All, cache)?;
//! println!("compile {:?} (cached: {}), load {:?}", times.compile, times.cache_hit, times.load);
//! let (y, y_shape) = model.predict("x", &latent, &[1, 128, 2, 8, 8], "y")?;
//! let mut runs = time_predictions(&model, "x", &latent, &[1, 128, 2, 8, 8], "y", 2, 10)?;
//! println!("median {:?}", median(&mut runs));
//! ```
//!
//! - A package is compiled once: [`compiled_model_path`] hashes the package's files (streamed
//!   SHA-256) and keeps the compiled `.mlmodelc` as `<cache_dir>/<hash>.mlmodelc`, installed with
//!   an atomic rename. Delete the cache directory to force a recompile.
//! - [`CoreMlModel::predict`] takes and returns dense row-major `f32`. Inputs are converted to the
//!   element type the model declares; outputs are read honouring their `dataType` (Float16/32/64)
//!   and `strides` (Core ML outputs are not always densely packed).
//! - Every Core ML failure, including a corrupt package or weight blob, is returned as a
//!   [`RunnerError`] carrying the `NSError` description. (An Objective-C *exception* raised inside
//!   Core ML is not an `NSError` and would still terminate the process.)
//!
//! Layout, compute-unit parsing and [`median`] are plain Rust and build on every platform; the
//! Core ML parts (`error`, `cache`, `runtime`, [`time_predictions`]) only on Apple targets, where
//! the `objc2` crates are available.

mod layout;
mod timing;
mod units;

#[cfg(target_vendor = "apple")]
mod cache;
#[cfg(target_vendor = "apple")]
mod error;
#[cfg(target_vendor = "apple")]
mod runtime;

pub use layout::{
    element_count, f16_bits_to_f32, f32_to_f16_bits, gather_to_f32, row_major_strides,
    scatter_from_f32, strided_span, to_usize_dims, LayoutError, ScalarType,
};
pub use timing::median;
pub use units::{ComputeUnits, ParseComputeUnitsError};

#[cfg(target_vendor = "apple")]
pub use cache::package_hash;
#[cfg(target_vendor = "apple")]
pub use error::RunnerError;
#[cfg(target_vendor = "apple")]
pub use runtime::{compiled_model_path, CoreMlModel, LoadTimes};
#[cfg(target_vendor = "apple")]
pub use timing::time_predictions;

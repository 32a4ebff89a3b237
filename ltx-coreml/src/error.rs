//! The crate's error type: every failure an exporter user can cause is a typed variant.

use std::path::PathBuf;

/// Errors raised by `ltx-coreml`.
#[derive(Debug, thiserror::Error)]
pub enum CoreMlError {
    #[error(
        "unsupported component `{0}` (expected video-decoder, video-encoder or latent-upsampler)"
    )]
    UnsupportedComponent(String),

    #[error("invalid shape: {0}")]
    InvalidShape(String),

    #[error("unsupported model for Core ML export: {0}")]
    UnsupportedModel(String),

    #[error("output `{0}` already exists (pass --force to replace it)")]
    OutputExists(PathBuf),

    #[error("invalid output path `{path}`: {reason}")]
    InvalidOutput { path: PathBuf, reason: String },

    #[error("cannot access `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("corrupt weight blob `{path}`: {reason}")]
    CorruptBlob { path: PathBuf, reason: String },

    #[error("invalid package `{path}`: {reason}")]
    InvalidPackage { path: PathBuf, reason: String },

    #[error("MIL graph: {0}")]
    Graph(String),

    #[error("interpreter: op `{op}` ({kind}): {reason}")]
    Interp {
        op: String,
        kind: String,
        reason: String,
    },

    #[error(transparent)]
    Model(#[from] ltx_core::Error),
}

impl From<candle_core::Error> for CoreMlError {
    fn from(e: candle_core::Error) -> Self {
        // Typed loader errors (missing or misshaped weights) travel wrapped in candle errors.
        Self::Model(ltx_core::Error::from(e))
    }
}

pub type Result<T> = std::result::Result<T, CoreMlError>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> CoreMlError {
    let path = path.into();
    move |source| CoreMlError::Io { path, source }
}

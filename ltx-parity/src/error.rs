//! The harness's error type.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] ltx_core::Error),

    #[error(transparent)]
    Pipelines(#[from] ltx_pipelines::Error),

    #[error("fixture `{path}`: {reason}")]
    BadFixture { path: PathBuf, reason: String },

    #[error("fixture `{path}`: unknown component `{component}`")]
    UnknownComponent { path: PathBuf, component: String },

    /// `--quantization` on a fixture whose model has no quantizable linears.
    #[error("fixture `{path}`: component `{component}` is not run quantized (only `transformer`)")]
    NotQuantizable { path: PathBuf, component: String },
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Core(e.into())
    }
}

pub type Result<T> = std::result::Result<T, Error>;

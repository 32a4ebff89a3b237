//! The crate's error type.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] ltx_core::Error),

    #[error("`{path}`: {reason}")]
    Media { path: PathBuf, reason: String },

    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    #[error(
        "the {component} needs {needed_mb} MB of weights in memory, over the budget of \
         {budget_mb} MB: {hint}"
    )]
    MemoryBudget {
        component: &'static str,
        needed_mb: u64,
        budget_mb: u64,
        hint: &'static str,
    },

    /// Two component files that do not belong together (e.g. a Gemma-3 text encoder for an
    /// LTX-2.5 transformer, a VAE of another generation).
    #[error("`{first}` and `{second}` do not belong together: {reason}")]
    Incompatible {
        first: PathBuf,
        second: PathBuf,
        reason: String,
    },

    #[error("cannot read or write `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Core(e.into())
    }
}

pub type Result<T> = std::result::Result<T, Error>;

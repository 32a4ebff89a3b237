//! The crate's error type: every failure a user can cause is a typed variant naming its cause.

use std::path::PathBuf;

/// Errors raised by `ltx-core`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("`{path}` is not a valid safetensors file: {reason}")]
    InvalidSafetensors { path: PathBuf, reason: String },

    #[error("`{path}` is not a usable GGUF file: {reason}")]
    InvalidGguf { path: PathBuf, reason: String },

    /// A quantization that cannot apply to this weight, dtype or device.
    #[error("quantization {quantization}: {reason}")]
    Quantization {
        quantization: String,
        reason: String,
    },

    #[error("`{path}`: metadata `{key}` is not valid JSON: {reason}")]
    InvalidMetadataJson {
        path: PathBuf,
        key: String,
        reason: String,
    },

    #[error("weight `{key}` is missing (expected shape {expected:?})")]
    MissingWeight { key: String, expected: Vec<usize> },

    #[error("weight `{key}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        key: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },

    #[error("weight `{key}` has dtype {dtype}, which cannot be used as a weight")]
    UnsupportedWeightDtype { key: String, dtype: String },

    #[error(
        "weight `{key}` ({megabytes} MB) could not be loaded onto {device}, most likely for lack of \
         memory (a smaller --dtype, another device, or a smaller model helps): {reason}"
    )]
    WeightLoad {
        key: String,
        megabytes: usize,
        device: String,
        reason: String,
    },

    #[error("weight `{key}` is stored in {shards} shards; each key must be stored once")]
    DuplicateWeight { key: String, shards: usize },

    #[error("unsupported config: `{key}` = {found} (expected {expected})")]
    UnsupportedConfig {
        key: String,
        found: String,
        expected: String,
    },

    #[error("invalid config: {0}")]
    InvalidConfig(String),

    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// A tiling overlap below what the operation needs (tiled encode: 64 px / 16 frames).
    #[error("tiling: {axis} overlap {found} {unit} is below the required {minimum} {unit}")]
    TileOverlap {
        axis: &'static str,
        found: usize,
        minimum: usize,
        unit: &'static str,
    },

    #[error("{what} has shape {found:?}, expected {expected}")]
    TensorShape {
        what: String,
        expected: String,
        found: Vec<usize>,
    },

    #[error("invalid video size: {0}")]
    InvalidVideoSize(String),

    #[error("invalid guidance parameter `{name}` = {value}: {reason}")]
    InvalidGuidance {
        name: String,
        value: f64,
        reason: String,
    },

    #[error("conditioning: {0}")]
    Conditioning(String),

    #[error("device `{0}` is not available: {1}")]
    DeviceUnavailable(String, String),

    /// A decoding backend outside Candle (e.g. a Core ML package) failed.
    #[error("{backend} backend: {reason}")]
    Backend { backend: String, reason: String },

    /// A Gemma text encoder's files (config, tokenizer, sidecars) are missing or unusable.
    #[error(transparent)]
    Gemma(#[from] crate::text_encoders::gemma::GemmaError),

    #[error(transparent)]
    Candle(candle_core::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps this error into a `candle_core::Error` so it can cross model code that speaks
    /// `candle_core::Result`; [`From<candle_core::Error>`] unwraps it again at the crate edge.
    pub fn into_candle(self) -> candle_core::Error {
        candle_core::Error::WrappedContext {
            wrapped: Box::new(self),
            context: String::new(),
        }
    }
}

/// Digs a typed `ltx_core::Error` out of a (possibly context-wrapped) candle error.
fn take_typed(err: candle_core::Error) -> std::result::Result<Error, candle_core::Error> {
    match err {
        candle_core::Error::WrappedContext { wrapped, context } => {
            match wrapped.downcast::<Error>() {
                Ok(typed) => Ok(*typed),
                Err(wrapped) => Err(candle_core::Error::WrappedContext { wrapped, context }),
            }
        }
        candle_core::Error::WithBacktrace { inner, backtrace } => match take_typed(*inner) {
            Ok(typed) => Ok(typed),
            Err(inner) => Err(candle_core::Error::WithBacktrace {
                inner: Box::new(inner),
                backtrace,
            }),
        },
        candle_core::Error::Context { inner, context } => match take_typed(*inner) {
            Ok(typed) => Ok(typed),
            Err(inner) => Err(candle_core::Error::Context {
                inner: Box::new(inner),
                context,
            }),
        },
        other => Err(other),
    }
}

impl From<candle_core::Error> for Error {
    fn from(err: candle_core::Error) -> Self {
        match take_typed(err) {
            Ok(typed) => typed,
            Err(other) => Error::Candle(other),
        }
    }
}

/// Shorthand for the `UnsupportedConfig` variant.
pub fn unsupported(key: &str, found: impl std::fmt::Display, expected: &str) -> Error {
    Error::UnsupportedConfig {
        key: key.to_string(),
        found: found.to_string(),
        expected: expected.to_string(),
    }
}

/// Shorthand for the `TensorShape` variant.
pub fn bad_shape(what: impl Into<String>, found: &[usize], expected: impl Into<String>) -> Error {
    Error::TensorShape {
        what: what.into(),
        expected: expected.into(),
        found: found.to_vec(),
    }
}

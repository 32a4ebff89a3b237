//! Errors of the Core ML runtime.

use std::path::PathBuf;

use super::layout::LayoutError;

/// Everything that can go wrong compiling, loading or running a Core ML model.
///
/// Messages from Core ML carry the `NSError`'s `localizedDescription`, domain and code.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("Core ML failed to compile {package}: {message}")]
    Compile { package: PathBuf, message: String },

    #[error("Core ML failed to load {path}: {message}")]
    Load { path: PathBuf, message: String },

    #[error("Core ML prediction failed: {message}")]
    Predict { message: String },

    #[error("model has no input named `{name}` (inputs: {available:?})")]
    MissingInput {
        name: String,
        available: Vec<String>,
    },

    #[error("model produced no output named `{name}` (outputs: {available:?})")]
    MissingOutput {
        name: String,
        available: Vec<String>,
    },

    #[error("feature `{name}` is not a multi-array")]
    NotMultiArray { name: String },

    #[error("feature `{name}` has unsupported MLMultiArray data type {code:#x}")]
    UnsupportedDataType { name: String, code: isize },

    #[error("input shape {shape:?} holds {expected} elements but {got} values were given")]
    ShapeMismatch {
        shape: Vec<usize>,
        expected: usize,
        got: usize,
    },

    #[error("multi-array layout: {0}")]
    Layout(#[from] LayoutError),

    #[error("path {0:?} is not valid UTF-8")]
    NonUtf8Path(PathBuf),

    #[error("model cache I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl RunnerError {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}

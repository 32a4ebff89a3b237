//! The small tensors of a packed text-encoder file (tokenizer, sidecars), read straight from the
//! file: the reference's `_tensor_to_bytes`, without mapping the multi-GB weights.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use safetensors::tensor::Metadata;
use safetensors::Dtype;

use super::GemmaError;
use crate::error::{Error, Result};

/// safetensors' own limit on a header.
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// A packed file's header, and the bytes of its small tensors read on demand (the weights are
/// never touched here).
pub(super) struct PackedFile {
    path: PathBuf,
    file: std::fs::File,
    data_start: u64,
    pub(super) header: Metadata,
}

impl PackedFile {
    pub(super) fn open(path: &Path) -> Result<Self> {
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let invalid = |reason: String| Error::InvalidSafetensors {
            path: path.to_path_buf(),
            reason,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let mut len = [0u8; 8];
        file.read_exact(&mut len).map_err(io)?;
        let n = u64::from_le_bytes(len);
        if n > MAX_HEADER_BYTES {
            return Err(invalid(format!("a {n}-byte header")));
        }
        let mut header = vec![0u8; n as usize];
        file.read_exact(&mut header).map_err(io)?;
        let header: Metadata =
            serde_json::from_slice(&header).map_err(|e| invalid(e.to_string()))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            data_start: 8 + n,
            header,
        })
    }

    /// Tensor `key` as bytes, as the reference's `_tensor_to_bytes` reads it: a U8 / I8 tensor's
    /// bytes, each element's low byte for wider integers (numpy's `astype(uint8)`).
    pub(super) fn bytes(&mut self, key: &str) -> Result<Vec<u8>> {
        let info = self.header.info(key).ok_or_else(|| Error::MissingWeight {
            key: key.to_string(),
            expected: Vec::new(),
        })?;
        let dtype = info.dtype;
        let integer = matches!(
            dtype,
            Dtype::U8
                | Dtype::I8
                | Dtype::BOOL
                | Dtype::U16
                | Dtype::I16
                | Dtype::U32
                | Dtype::I32
                | Dtype::U64
                | Dtype::I64
        );
        if !integer {
            return Err(GemmaError::BadAssetTensor {
                path: self.path.clone(),
                key: key.to_string(),
                dtype: format!("{dtype:?}"),
            }
            .into());
        }
        let (begin, end) = info.data_offsets;
        let mut data = vec![0u8; end.saturating_sub(begin)];
        let io = |source| Error::Io {
            path: self.path.clone(),
            source,
        };
        self.file
            .seek(SeekFrom::Start(self.data_start + begin as u64))
            .map_err(io)?;
        self.file.read_exact(&mut data).map_err(io)?;
        let width = dtype.bitsize() / 8;
        Ok(match width {
            1 => data,
            // little endian: the first byte of each element is its value modulo 256
            _ => data.chunks_exact(width).map(|c| c[0]).collect(),
        })
    }
}

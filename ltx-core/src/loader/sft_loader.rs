//! Port of `ltx_core/loader/sft_loader.py`: memory-mapped (multi-shard) safetensors files and the
//! checkpoint's `__metadata__["config"]` JSON.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::SafeTensors;

use super::primitives::{StateDict, TensorSource};
use super::sd_ops::SDOps;
use crate::{Error, Result};

/// One memory-mapped safetensors file with its parsed header.
pub(crate) struct Shard {
    pub(crate) path: PathBuf,
    mmap: memmap2::Mmap,
    data_start: usize,
    header: Metadata,
}

impl Shard {
    fn open(path: &Path) -> Result<Self> {
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the file is opened read-only and we never hand out mutable views; as with every
        // mmap, a concurrent writer truncating the file is outside what we can guard against.
        let mmap = unsafe { memmap2::MmapOptions::new().map(&file) }.map_err(io)?;
        let (header_len, header) =
            SafeTensors::read_metadata(&mmap).map_err(|e| Error::InvalidSafetensors {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            mmap,
            data_start: 8 + header_len,
            header,
        })
    }

    /// Drops this process's mapping of a tensor's pages once it has been copied out, so a loaded
    /// checkpoint does not stay resident twice (the pages remain in the OS page cache and are
    /// read again if touched). Best effort: a failure only costs memory.
    pub(crate) fn release(&self, info: &TensorInfo) {
        #[cfg(unix)]
        {
            let (begin, end) = info.data_offsets;
            // SAFETY: the mapping is read-only and file-backed, and no reference into this range
            // outlives the copy made by the loader; after MADV_DONTNEED a later read simply faults
            // the page in again from the file.
            let _ = unsafe {
                self.mmap.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    self.data_start + begin,
                    end - begin,
                )
            };
        }
        #[cfg(not(unix))]
        let _ = info;
    }

    /// The raw little-endian bytes of a tensor described by `info`.
    pub(crate) fn bytes(&self, info: &TensorInfo) -> &[u8] {
        let (begin, end) = info.data_offsets;
        // `read_metadata` validated that every tensor lies inside the buffer.
        &self.mmap[self.data_start + begin..self.data_start + end]
    }
}

/// A checkpoint made of one or more safetensors shards, memory-mapped.
#[derive(Clone)]
pub struct SafetensorsFiles {
    shards: Vec<Arc<Shard>>,
}

impl SafetensorsFiles {
    /// Opens and validates every shard (header JSON, offsets, file length).
    pub fn open<P: AsRef<Path>>(paths: &[P]) -> Result<Self> {
        if paths.is_empty() {
            return Err(Error::InvalidInput("no safetensors file given".into()));
        }
        let shards = paths
            .iter()
            .map(|p| Shard::open(p.as_ref()).map(Arc::new))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { shards })
    }

    /// Paths of the shards, in the order given.
    pub fn paths(&self) -> Vec<&Path> {
        self.shards.iter().map(|s| s.path.as_path()).collect()
    }

    /// The first shard's whole `__metadata__` map (empty when absent).
    pub fn metadata(&self) -> HashMap<String, String> {
        self.shards[0].header.metadata().clone().unwrap_or_default()
    }

    /// A string entry of the first shard's `__metadata__` (e.g. `model_version`).
    pub fn metadata_entry(&self, key: &str) -> Option<&str> {
        self.shards[0]
            .header
            .metadata()
            .as_ref()
            .and_then(|m| m.get(key))
            .map(String::as_str)
    }

    /// `__metadata__[key]` parsed as JSON; `None` when the entry is absent.
    pub fn metadata_json(&self, key: &str) -> Result<Option<serde_json::Value>> {
        let Some(text) = self.metadata_entry(key) else {
            return Ok(None);
        };
        serde_json::from_str(text)
            .map(Some)
            .map_err(|e| Error::InvalidMetadataJson {
                path: self.shards[0].path.clone(),
                key: key.to_string(),
                reason: e.to_string(),
            })
    }

    /// The checkpoint's model config (`__metadata__["config"]`), an empty object when absent —
    /// the reference's `SafetensorsModelStateDictLoader.metadata`.
    pub fn config(&self) -> Result<serde_json::Value> {
        Ok(self
            .metadata_json("config")?
            .unwrap_or_else(|| serde_json::Value::Object(Default::default())))
    }

    /// Every checkpoint key, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .shards
            .iter()
            .flat_map(|s| s.header.tensors().into_keys())
            .collect();
        keys.sort();
        keys
    }

    /// The tensors kept by `ops`, under their module-side names.
    pub fn state_dict(&self, ops: &SDOps) -> Result<StateDict> {
        let mut entries: HashMap<String, TensorSource> = HashMap::new();
        for shard in &self.shards {
            for (name, info) in shard.header.tensors() {
                let Some(key) = ops.apply_to_key(&name) else {
                    continue;
                };
                let source = TensorSource::Mapped {
                    shard: shard.clone(),
                    info: info.clone(),
                    checkpoint_key: name.clone(),
                };
                if entries.insert(key.clone(), source).is_some() {
                    return Err(Error::DuplicateWeight { key, shards: 2 });
                }
            }
        }
        Ok(StateDict::new(ops.name, entries))
    }
}

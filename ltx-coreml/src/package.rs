//! `.mlpackage` layout: `Manifest.json`, `Data/com.apple.CoreML/model.mlmodel` (protobuf) and
//! `Data/com.apple.CoreML/weights/weight.bin`; the exporter's [`PackageMeta`] lives in the
//! model's `Metadata.userDefined`. Writing goes to a temporary sibling directory that is renamed
//! into place, so a failed export leaves nothing behind.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};

use prost::Message;
use serde::{Deserialize, Serialize};

use crate::error::{io_err, CoreMlError, Result};
use crate::proto;

pub const MODEL_PATH: &str = "Data/com.apple.CoreML/model.mlmodel";
pub const WEIGHTS_DIR: &str = "Data/com.apple.CoreML/weights";
pub const WEIGHT_FILE: &str = "Data/com.apple.CoreML/weights/weight.bin";
/// `Metadata.userDefined` key holding the JSON [`PackageMeta`].
pub const META_KEY: &str = "ltx_coreml.meta";

/// What was exported, from what, and how: enough to rebuild the Candle twin of the package.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PackageMeta {
    /// `video-decoder`, `video-encoder` or `latent-upsampler`.
    pub component: String,
    /// The checkpoint as given on the command line.
    pub checkpoint: PathBuf,
    /// The upsampler file (latent upsampler with the VAE statistics from `checkpoint`).
    pub upsampler: Option<PathBuf>,
    pub input_name: String,
    /// Time-major `[F, C, H, W]`.
    pub input_shape: Vec<usize>,
    pub output_name: String,
    pub output_shape: Vec<usize>,
    /// `fp16` or `fp32` (compute and weights; I/O is always fp32).
    pub precision: String,
    /// `channel-fold` or `per-tap`.
    pub conv_form: String,
    /// Layout of the I/O tensors.
    pub layout: String,
}

pub const LAYOUT: &str =
    "time-major [F, C, H, W] (the reference's [1, C, F, H, W] with frames as batch)";

impl PackageMeta {
    /// Reads the metadata of an exported package.
    pub fn read(path: &Path) -> Result<Self> {
        let model = read_model(path)?;
        Self::from_model(&model, path)
    }

    pub fn from_model(model: &proto::Model, path: &Path) -> Result<Self> {
        let text = model
            .description
            .as_ref()
            .and_then(|d| d.metadata.as_ref())
            .and_then(|m| m.user_defined.get(META_KEY))
            .ok_or_else(|| {
                invalid(
                    path,
                    format!("no `{META_KEY}` metadata (not an ltx-coreml export)"),
                )
            })?;
        serde_json::from_str(text).map_err(|e| invalid(path, format!("`{META_KEY}`: {e}")))
    }
}

pub(crate) fn invalid(path: &Path, reason: impl Into<String>) -> CoreMlError {
    CoreMlError::InvalidPackage {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Decodes `model.mlmodel` of a package (checking its manifest first).
pub fn read_model(path: &Path) -> Result<proto::Model> {
    let manifest = path.join("Manifest.json");
    let text = std::fs::read_to_string(&manifest).map_err(io_err(&manifest))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| invalid(path, format!("Manifest.json: {e}")))?;
    let root = json["rootModelIdentifier"].as_str().unwrap_or_default();
    let rel = json["itemInfoEntries"][root]["path"]
        .as_str()
        .ok_or_else(|| invalid(path, "Manifest.json has no root model entry"))?;
    let file = path.join("Data").join(rel);
    let bytes = std::fs::read(&file).map_err(io_err(&file))?;
    proto::Model::decode(bytes.as_slice()).map_err(|e| invalid(path, format!("model.mlmodel: {e}")))
}

/// A fresh random (version 4) UUID, from the process's randomly keyed hasher and the clock.
pub fn new_uuid() -> String {
    let state = std::collections::hash_map::RandomState::new();
    let mut words = [0u64; 2];
    for (i, w) in words.iter_mut().enumerate() {
        let mut h = state.build_hasher();
        h.write_usize(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        h.write_u32(std::process::id());
        *w = h.finish();
    }
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&words[0].to_le_bytes());
    b[8..].copy_from_slice(&words[1].to_le_bytes());
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02X}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn manifest_json() -> String {
    let (model, weights) = (new_uuid(), new_uuid());
    let entry = |desc: &str, name: &str, path: &str| {
        serde_json::json!({"author": "com.apple.CoreML", "description": desc, "name": name,
            "path": path})
    };
    let json = serde_json::json!({
        "fileFormatVersion": "1.0.0",
        "itemInfoEntries": {
            model.clone(): entry("CoreML Model Specification", "model.mlmodel",
                "com.apple.CoreML/model.mlmodel"),
            weights: entry("CoreML Model Weights", "weights", "com.apple.CoreML/weights"),
        },
        "rootModelIdentifier": model,
    });
    serde_json::to_string_pretty(&json).unwrap_or_default()
}

/// A package being written in a temporary sibling directory; removed on drop unless committed.
pub struct PendingPackage {
    tmp: PathBuf,
    out: PathBuf,
    force: bool,
    committed: bool,
}

impl PendingPackage {
    /// Checks `out` and creates the temporary directory tree next to it.
    pub fn create(out: &Path, force: bool) -> Result<Self> {
        let name = out
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| n.ends_with(".mlpackage") && n.len() > ".mlpackage".len())
            .ok_or_else(|| CoreMlError::InvalidOutput {
                path: out.to_path_buf(),
                reason: "the name must end in `.mlpackage`".into(),
            })?;
        if out.symlink_metadata().is_ok() && !force {
            return Err(CoreMlError::OutputExists(out.to_path_buf()));
        }
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !parent.is_dir() {
            return Err(CoreMlError::InvalidOutput {
                path: out.to_path_buf(),
                reason: format!("the folder `{}` does not exist", parent.display()),
            });
        }
        let tmp = parent.join(format!(".{name}.tmp-{}", &new_uuid()[..8]));
        let weights = tmp.join(WEIGHTS_DIR);
        std::fs::create_dir_all(&weights).map_err(io_err(&weights))?;
        Ok(Self {
            tmp,
            out: out.to_path_buf(),
            force,
            committed: false,
        })
    }

    pub fn weight_file(&self) -> PathBuf {
        self.tmp.join(WEIGHT_FILE)
    }

    /// Writes the model and manifest, then renames the package into place.
    pub fn commit(mut self, model: &proto::Model) -> Result<()> {
        let mpath = self.tmp.join(MODEL_PATH);
        std::fs::write(&mpath, model.encode_to_vec()).map_err(io_err(&mpath))?;
        let man = self.tmp.join("Manifest.json");
        std::fs::write(&man, manifest_json()).map_err(io_err(&man))?;
        if self.out.symlink_metadata().is_ok() {
            if !self.force {
                return Err(CoreMlError::OutputExists(self.out.clone()));
            }
            let res = if self.out.is_dir() {
                std::fs::remove_dir_all(&self.out)
            } else {
                std::fs::remove_file(&self.out)
            };
            res.map_err(io_err(&self.out))?;
        }
        std::fs::rename(&self.tmp, &self.out).map_err(io_err(&self.out))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for PendingPackage {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}

/// A multi-array feature (`FLOAT32`, fixed shape).
pub fn feature(name: &str, shape: &[usize]) -> proto::FeatureDescription {
    proto::FeatureDescription {
        name: name.to_string(),
        short_description: String::new(),
        r#type: Some(proto::FeatureType {
            multi_array_type: Some(proto::ArrayFeatureType {
                shape: shape.iter().map(|&d| d as i64).collect(),
                data_type: proto::array_data_type::FLOAT32,
            }),
            is_optional: false,
        }),
    }
}

/// The `Model` message around a program.
pub fn model_message(
    spec_version: i32,
    program: proto::Program,
    meta: &PackageMeta,
) -> Result<proto::Model> {
    let json = serde_json::to_string(meta).map_err(|e| CoreMlError::Graph(e.to_string()))?;
    let user_defined = HashMap::from([
        (META_KEY.to_string(), json),
        ("ltx_coreml.component".to_string(), meta.component.clone()),
        ("ltx_coreml.precision".to_string(), meta.precision.clone()),
        ("ltx_coreml.conv_form".to_string(), meta.conv_form.clone()),
    ]);
    Ok(proto::Model {
        specification_version: spec_version,
        description: Some(proto::ModelDescription {
            input: vec![feature(&meta.input_name, &meta.input_shape)],
            output: vec![feature(&meta.output_name, &meta.output_shape)],
            metadata: Some(proto::Metadata {
                short_description: format!("LTX-2 {} exported by ltx-coreml", meta.component),
                version_string: env!("CARGO_PKG_VERSION").to_string(),
                author: String::new(),
                license: String::new(),
                user_defined,
            }),
        }),
        ml_program: Some(program),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_fresh_and_well_formed() {
        let (a, b) = (new_uuid(), new_uuid());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }
}

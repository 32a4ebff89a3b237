//! On-disk cache of compiled models: `<cache_dir>/<hash>.mlmodelc`, keyed by package contents.
//!
//! Only file-system work lives here (hashing, atomic install); the Core ML compile call is in
//! `runtime.rs`.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::RunnerError;

/// Mixed into every key so that a change of cache layout never reuses old entries.
const CACHE_FORMAT: &[u8] = b"ltx-coreml compiled-model cache v1\0";

/// Read size while hashing; weight blobs are streamed, never held in memory whole.
const HASH_CHUNK_BYTES: usize = 1 << 20;

/// Hex SHA-256 over every regular file of a `.mlpackage` directory (model.mlmodel, weights/*.bin,
/// Manifest.json, …) or over a single `.mlmodel` file.
///
/// Files are visited in sorted relative-path order and each contributes its path and length before
/// its contents, so renaming or moving bytes between files changes the key.
pub fn package_hash(package: &Path) -> Result<String, RunnerError> {
    let meta = fs::metadata(package).map_err(RunnerError::io(package))?;
    let files = if meta.is_dir() {
        let mut files = Vec::new();
        collect_files(package, &mut files)?;
        files.sort();
        files
    } else {
        vec![package.to_path_buf()]
    };
    let mut hasher = Sha256::new();
    hasher.update(CACHE_FORMAT);
    let mut buffer = vec![0u8; HASH_CHUNK_BYTES];
    for file in &files {
        let relative = file.strip_prefix(package).unwrap_or(file);
        let name = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        let mut reader = File::open(file).map_err(RunnerError::io(file))?;
        let len = reader.metadata().map_err(RunnerError::io(file))?.len();
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update(len.to_le_bytes());
        let mut hashed = 0u64;
        loop {
            let n = reader.read(&mut buffer).map_err(RunnerError::io(file))?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            hashed += n as u64;
        }
        if hashed != len {
            return Err(RunnerError::Io {
                path: file.clone(),
                source: std::io::Error::other(format!(
                    "file changed while hashing ({len} bytes expected, {hashed} read)"
                )),
            });
        }
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Appends every regular file below `dir` (following directory symlinks as Core ML would).
fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), RunnerError> {
    for entry in fs::read_dir(dir).map_err(RunnerError::io(dir))? {
        let path = entry.map_err(RunnerError::io(dir))?.path();
        let meta = fs::metadata(&path).map_err(RunnerError::io(&path))?;
        if meta.is_dir() {
            collect_files(&path, out)?;
        } else if meta.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

/// Where the compiled model for `hash` lives in `cache_dir`.
pub fn cached_model_path(cache_dir: &Path, hash: &str) -> PathBuf {
    cache_dir.join(format!("{hash}.mlmodelc"))
}

/// Moves a freshly compiled `.mlmodelc` directory into the cache and returns its final path.
///
/// The directory is first moved (or, across file systems, copied) to a unique hidden name inside
/// `cache_dir`, then renamed into place, so a reader never sees a half-written entry. If another
/// process installed the same key meanwhile, its copy is kept and ours is discarded.
pub fn install_compiled(
    compiled: &Path,
    cache_dir: &Path,
    hash: &str,
) -> Result<PathBuf, RunnerError> {
    fs::create_dir_all(cache_dir).map_err(RunnerError::io(cache_dir))?;
    let target = cached_model_path(cache_dir, hash);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let staging = cache_dir.join(format!(".{hash}.{}.{nanos}.partial", std::process::id()));
    if fs::rename(compiled, &staging).is_err() {
        // Typically the compiler's temporary directory is on another volume.
        if let Err(err) = copy_dir_all(compiled, &staging) {
            let _ = fs::remove_dir_all(&staging);
            return Err(err);
        }
        let _ = fs::remove_dir_all(compiled);
    }
    match fs::rename(&staging, &target) {
        Ok(()) => Ok(target),
        Err(source) => {
            let _ = fs::remove_dir_all(&staging);
            if target.is_dir() {
                Ok(target)
            } else {
                Err(RunnerError::Io {
                    path: target,
                    source,
                })
            }
        }
    }
}

fn copy_dir_all(src: &Path, dst: &Path) -> Result<(), RunnerError> {
    fs::create_dir_all(dst).map_err(RunnerError::io(dst))?;
    for entry in fs::read_dir(src).map_err(RunnerError::io(src))? {
        let entry = entry.map_err(RunnerError::io(src))?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        if fs::metadata(&from)
            .map_err(RunnerError::io(&from))?
            .is_dir()
        {
            copy_dir_all(&from, &to)?;
        } else {
            fs::copy(&from, &to).map_err(RunnerError::io(&from))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "ltx-coreml-cache-test-{tag}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn fake_package(root: &Path, weights: &[u8]) -> PathBuf {
        let package = root.join("m.mlpackage");
        let data = package.join("Data/com.apple.CoreML");
        fs::create_dir_all(data.join("weights")).unwrap();
        fs::write(package.join("Manifest.json"), b"{}").unwrap();
        fs::write(data.join("model.mlmodel"), b"spec").unwrap();
        fs::write(data.join("weights/weight.bin"), weights).unwrap();
        package
    }

    #[test]
    fn hash_depends_on_contents_not_location() {
        let root = scratch_dir("hash");
        let a = fake_package(&root.join("a"), &[1, 2, 3]);
        let b = fake_package(&root.join("b"), &[1, 2, 3]);
        let c = fake_package(&root.join("c"), &[1, 2, 4]);
        let ha = package_hash(&a).unwrap();
        assert_eq!(ha.len(), 64);
        assert_eq!(ha, package_hash(&b).unwrap());
        assert_ne!(ha, package_hash(&c).unwrap());
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn hash_streams_files_larger_than_a_chunk() {
        let root = scratch_dir("big");
        let big = vec![7u8; HASH_CHUNK_BYTES * 2 + 3];
        let a = fake_package(&root.join("a"), &big);
        let mut other = big.clone();
        *other.last_mut().unwrap() = 8;
        let b = fake_package(&root.join("b"), &other);
        assert_ne!(package_hash(&a).unwrap(), package_hash(&b).unwrap());
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn missing_package_is_io_error() {
        let err = package_hash(Path::new("/nonexistent/x.mlpackage")).unwrap_err();
        assert!(matches!(err, RunnerError::Io { .. }));
    }

    #[test]
    fn install_moves_and_keeps_existing_entry() {
        let root = scratch_dir("install");
        let cache = root.join("cache");
        let compiled = root.join("tmp/model.mlmodelc");
        fs::create_dir_all(compiled.join("weights")).unwrap();
        fs::write(compiled.join("weights/weight.bin"), b"one").unwrap();
        let installed = install_compiled(&compiled, &cache, "abc").unwrap();
        assert_eq!(installed, cache.join("abc.mlmodelc"));
        assert!(!compiled.exists());
        assert_eq!(
            fs::read(installed.join("weights/weight.bin")).unwrap(),
            b"one"
        );

        // A second install of the same key keeps the first entry and leaves no staging dirs.
        fs::create_dir_all(&compiled).unwrap();
        fs::write(compiled.join("coremldata.bin"), b"two").unwrap();
        let again = install_compiled(&compiled, &cache, "abc").unwrap();
        assert_eq!(again, installed);
        assert!(installed.join("weights/weight.bin").exists());
        let leftovers = fs::read_dir(&cache).unwrap().count();
        assert_eq!(leftovers, 1);
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn copy_dir_all_copies_nested_files() {
        let root = scratch_dir("copy");
        fs::create_dir_all(root.join("src/a/b")).unwrap();
        fs::write(root.join("src/a/b/f"), b"x").unwrap();
        copy_dir_all(&root.join("src"), &root.join("dst")).unwrap();
        assert_eq!(fs::read(root.join("dst/a/b/f")).unwrap(), b"x");
        fs::remove_dir_all(root).unwrap();
    }
}

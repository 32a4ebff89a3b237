//! Weights from the Hugging Face Hub (`--model Lightricks/LTX-2[.3|.5]`, `--gemma ...`) into the standard
//! HF cache (honours `HF_HOME`, `HF_HUB_CACHE`, `HF_ENDPOINT`, `HF_TOKEN`; `HF_HUB_OFFLINE=1` or
//! `--offline` resolves from the cache only), with a download progress bar. Local paths never
//! touch the network.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Which checkpoint of a model repository a pipeline needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// The distilled model (`ltx generate` / `distilled`).
    Distilled,
    /// The full model (one-stage, two-stage, HQ).
    Dev,
}

/// The model files of a repository: one checkpoint, or one file per component.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelFiles {
    /// LTX-2 / LTX-2.3: transformer, VAEs, vocoder and connectors in one file (Gemma apart).
    Monolith(&'static str),
    /// LTX-2.5: `diffusion_models/`, `text_encoders/`, `vae/`, `model_patches/`.
    Split(SplitFiles),
}

/// The per-component files of a split repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitFiles {
    pub transformer: &'static str,
    pub text_encoder: &'static str,
    pub video_vae: &'static str,
    pub audio_vae: &'static str,
    pub duration_head: &'static str,
}

/// The files a pipeline takes from a model repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoFiles {
    pub model: ModelFiles,
    pub spatial_upsampler: &'static str,
    pub distilled_lora: &'static str,
}

/// The released file names of `Lightricks/LTX-2`, `Lightricks/LTX-2.3` and `Lightricks/LTX-2.5`
/// (2.5: the bf16 files, and the convolutional video decoder — the diffusion decoder
/// `vae/ltx-2.5-video-vae-bf16.safetensors` is not ported yet).
pub fn repo_files(repo: &str, variant: Variant) -> Result<RepoFiles> {
    let pick = |dev, distilled| match variant {
        Variant::Distilled => distilled,
        Variant::Dev => dev,
    };
    let (model, up, lora) = match repo {
        "Lightricks/LTX-2" => (
            ModelFiles::Monolith(pick(
                "ltx-2-19b-dev.safetensors",
                "ltx-2-19b-distilled.safetensors",
            )),
            "ltx-2-spatial-upscaler-x2-1.0.safetensors",
            "ltx-2-19b-distilled-lora-384.safetensors",
        ),
        "Lightricks/LTX-2.3" => (
            ModelFiles::Monolith(pick(
                "ltx-2.3-22b-dev.safetensors",
                "ltx-2.3-22b-distilled.safetensors",
            )),
            "ltx-2.3-spatial-upscaler-x2-1.0.safetensors",
            "ltx-2.3-22b-distilled-lora-384.safetensors",
        ),
        "Lightricks/LTX-2.5" => (
            ModelFiles::Split(SplitFiles {
                transformer: pick(
                    "diffusion_models/ltx-2.5-22b-dev-transformer-bf16.safetensors",
                    "diffusion_models/ltx-2.5-22b-distilled-transformer-bf16.safetensors",
                ),
                text_encoder: "text_encoders/gemma4-12b-with-proj-ltx-2.5-bf16.safetensors",
                video_vae: "vae/ltx-2.5-video-vae-conv-bf16.safetensors",
                audio_vae: "vae/ltx-2.5-audio-vae-bf16.safetensors",
                duration_head: "model_patches/ltx-2.5-duration-head-bf16.safetensors",
            }),
            "latent_upscale_models/ltx-2.5-latent-spatial-upscaler-x2-bf16-1.0.safetensors",
            "loras/ltx-2.5-22b-distilled-lora-450-bf16.safetensors",
        ),
        other => bail!(
            "unknown model repository `{other}`: use Lightricks/LTX-2, Lightricks/LTX-2.3 or \
             Lightricks/LTX-2.5, or local files (--checkpoint-path / --transformer-path ...)"
        ),
    };
    Ok(RepoFiles {
        model,
        spatial_upsampler: up,
        distilled_lora: lora,
    })
}

/// The Gemma text encoder most LTX users take.
pub const DEFAULT_GEMMA_REPO: &str = "google/gemma-3-12b-it-qat-q4_0-unquantized";

/// Files of a Gemma repository the text encoder reads.
const GEMMA_PATTERNS: [&str; 4] = ["*.json", "*.safetensors", "tokenizer.model", "*.jinja"];

/// `HF_HUB_OFFLINE` as the Python hub reads it (hf-hub 1.0 does not).
pub fn offline_from_env() -> bool {
    is_truthy(std::env::var("HF_HUB_OFFLINE").ok().as_deref())
}

/// The Python hub's reading of a boolean environment variable.
fn is_truthy(v: Option<&str>) -> bool {
    v.is_some_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

fn split_repo(repo: &str) -> Result<(&str, &str)> {
    match repo.split_once('/') {
        Some((o, n)) if !o.is_empty() && !n.is_empty() && !n.contains('/') => Ok((o, n)),
        _ => bail!("`{repo}` is not a repository id (owner/name)"),
    }
}

/// A hub client; `cache_dir` overrides the environment's cache (tests).
pub struct Hub {
    client: hf_hub::HFClientSync,
    offline: bool,
}

/// A progress bar fed by hf-hub's download events.
struct Bar(indicatif::ProgressBar);

impl hf_hub::progress::ProgressHandler for Bar {
    fn on_progress(&self, event: &hf_hub::progress::ProgressEvent) {
        use hf_hub::progress::{DownloadEvent, ProgressEvent};
        if let ProgressEvent::Download(e) = event {
            match e {
                DownloadEvent::Start { total_bytes, .. } => self.0.set_length(*total_bytes),
                DownloadEvent::AggregateProgress {
                    bytes_completed, ..
                } => self.0.set_position(*bytes_completed),
                DownloadEvent::Progress { files } => {
                    let done: u64 = files.iter().map(|f| f.bytes_completed).sum();
                    if done > self.0.position() {
                        self.0.set_position(done);
                    }
                }
                DownloadEvent::Complete => self.0.finish(),
            }
        }
    }
}

fn bar(name: &str) -> hf_hub::progress::Progress {
    let b = indicatif::ProgressBar::new(0);
    b.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:>18} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    b.set_message(name.to_string());
    hf_hub::progress::Progress::new(Bar(b))
}

impl Hub {
    pub fn new(cache_dir: Option<&Path>, offline: bool) -> Result<Self> {
        let mut builder = hf_hub::HFClient::builder();
        if let Some(dir) = cache_dir {
            builder = builder.cache_dir(dir);
        }
        let client = hf_hub::HFClientSync::from_inner(builder.build()?)?;
        Ok(Self { client, offline })
    }

    /// One file of a model repository, downloaded into the cache unless it is there already.
    pub fn file(&self, repo: &str, filename: &str) -> Result<PathBuf> {
        let (owner, name) = split_repo(repo)?;
        let r = self.client.model(owner, name);
        let req = r
            .download_file()
            .filename(filename)
            .local_files_only(self.offline);
        let out = if self.offline {
            req.send()
        } else {
            req.progress(bar(filename)).send()
        };
        out.with_context(|| {
            if self.offline {
                format!("`{filename}` of {repo} is not in the Hugging Face cache (offline)")
            } else {
                format!("cannot download `{filename}` from {repo}")
            }
        })
    }

    /// The files of a Gemma repository the text encoder needs; returns the snapshot folder.
    pub fn gemma_root(&self, repo: &str) -> Result<PathBuf> {
        let (owner, name) = split_repo(repo)?;
        let r = self.client.model(owner, name);
        let req = r
            .snapshot_download()
            .allow_patterns(GEMMA_PATTERNS.iter().map(|s| s.to_string()).collect())
            .local_files_only(self.offline);
        let out = if self.offline {
            req.send()
        } else {
            req.progress(bar("gemma")).send()
        };
        out.with_context(|| format!("cannot get the Gemma text encoder `{repo}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Python-compatible cache entry: `models--owner--name/{refs/main, snapshots/<rev>/file}`.
    fn fake_cache_file(cache: &Path, repo: &str, file: &str, bytes: &[u8]) -> PathBuf {
        let dir = cache.join(format!("models--{}", repo.replace('/', "--")));
        let rev = "0123456789abcdef0123456789abcdef01234567";
        std::fs::create_dir_all(dir.join("refs")).unwrap();
        std::fs::write(dir.join("refs/main"), rev).unwrap();
        let snap = dir.join("snapshots").join(rev);
        let path = snap.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn released_file_names() {
        let f = repo_files("Lightricks/LTX-2", Variant::Distilled).unwrap();
        assert_eq!(
            f.model,
            ModelFiles::Monolith("ltx-2-19b-distilled.safetensors")
        );
        let f = repo_files("Lightricks/LTX-2.3", Variant::Dev).unwrap();
        assert_eq!(f.model, ModelFiles::Monolith("ltx-2.3-22b-dev.safetensors"));
        assert_eq!(
            f.distilled_lora,
            "ltx-2.3-22b-distilled-lora-384.safetensors"
        );
        assert!(repo_files("someone/else", Variant::Dev).is_err());
        // every LTX-2.5 name is one of the released files (their headers are in the repo)
        let released = std::fs::read_dir(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/reference/released_ltx25"
        ))
        .unwrap()
        .map(|e| {
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap();
            v["name"].as_str().unwrap().to_string()
        })
        .collect::<Vec<_>>();
        for variant in [Variant::Dev, Variant::Distilled] {
            let f = repo_files("Lightricks/LTX-2.5", variant).unwrap();
            let ModelFiles::Split(s) = f.model else {
                panic!("LTX-2.5 is split")
            };
            for name in [
                s.transformer,
                s.text_encoder,
                s.video_vae,
                s.audio_vae,
                s.duration_head,
                f.spatial_upsampler,
                f.distilled_lora,
            ] {
                assert!(released.iter().any(|r| r == name), "{name}");
            }
        }
        assert!(split_repo("no-slash").is_err());
        assert!(split_repo("a/b/c").is_err());
    }

    #[test]
    fn offline_resolution_from_a_fake_cache() {
        let cache = tempfile::tempdir().unwrap();
        let want = fake_cache_file(
            cache.path(),
            "Lightricks/LTX-2",
            "ltx-2-19b-distilled.safetensors",
            b"not really a checkpoint",
        );
        let hub = Hub::new(Some(cache.path()), true).unwrap();
        let got = hub
            .file("Lightricks/LTX-2", "ltx-2-19b-distilled.safetensors")
            .unwrap();
        assert_eq!(
            std::fs::canonicalize(got).unwrap(),
            std::fs::canonicalize(want).unwrap()
        );
        // a cache miss offline is an error naming the file, never a download
        let e = hub
            .file(
                "Lightricks/LTX-2",
                "ltx-2-spatial-upscaler-x2-1.0.safetensors",
            )
            .unwrap_err();
        assert!(
            format!("{e:#}").contains("not in the Hugging Face cache"),
            "{e:#}"
        );
    }

    #[test]
    fn offline_flag_parsing() {
        for v in ["1", "true", "YES", " on "] {
            assert!(is_truthy(Some(v)), "{v}");
        }
        for v in ["0", "false", "", "no"] {
            assert!(!is_truthy(Some(v)), "{v}");
        }
        assert!(!is_truthy(None));
    }
}

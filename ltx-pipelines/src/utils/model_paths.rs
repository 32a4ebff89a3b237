//! Where each component's weights live: one monolithic checkpoint (LTX-2 / LTX-2.3, with a Gemma
//! root beside it) or one file per component (LTX-2.5's split layout), with the rules of the
//! reference's `ltx_pipelines/utils/model_paths.py`:
//!
//! * the split flags (`--transformer-path`, `--text-encoder-path`, `--audio-vae-path`,
//!   `--duration-head-path`) and the monolith flags (`--checkpoint-path`, `--gemma-root`) exclude
//!   each other;
//! * `--video-vae-path` fills the video VAE in either layout (in a monolith it replaces the
//!   checkpoint's VAE);
//! * an ltx-rs addition: `--transformer-path` with `--checkpoint-path` replaces the monolith's
//!   transformer (e.g. with a GGUF file made by `ltx quantize`); the text connectors and projection
//!   are still read from the checkpoint;
//! * a monolith's other components all come from the checkpoint;
//! * a split set may leave out what a pipeline does not need: the pipeline names what it needs
//!   ([`ModelPaths::require`]) and a missing part is refused before anything is loaded.
//!
//! The embeddings processor (feature extractor + connectors) reads the transformer file and, in a
//! split set, the text-encoder file as well: LTX-2.5's projection travels with Gemma.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// One component file of a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    Transformer,
    TextEncoder,
    VideoVae,
    AudioVae,
    DurationHead,
}

impl Component {
    pub const ALL: [Component; 5] = [
        Component::Transformer,
        Component::TextEncoder,
        Component::VideoVae,
        Component::AudioVae,
        Component::DurationHead,
    ];

    /// What the component is, in words.
    pub fn name(self) -> &'static str {
        match self {
            Self::Transformer => "transformer",
            Self::TextEncoder => "text encoder",
            Self::VideoVae => "video VAE",
            Self::AudioVae => "audio VAE",
            Self::DurationHead => "duration head",
        }
    }

    /// The command-line flag of the component in a split set.
    pub fn split_flag(self) -> &'static str {
        match self {
            Self::Transformer => "--transformer-path",
            Self::TextEncoder => "--text-encoder-path",
            Self::VideoVae => "--video-vae-path",
            Self::AudioVae => "--audio-vae-path",
            Self::DurationHead => "--duration-head-path",
        }
    }
}

/// Which layout the paths describe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One checkpoint holds transformer, VAEs, vocoder, connectors (and a duration head, if any);
    /// Gemma is a separate root.
    Monolith,
    /// One file per component.
    Split,
}

/// The per-component paths as given on the command line (before the layout rules).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathFlags {
    pub checkpoint: Option<PathBuf>,
    pub gemma_root: Option<PathBuf>,
    pub transformer: Option<PathBuf>,
    pub text_encoder: Option<PathBuf>,
    pub video_vae: Option<PathBuf>,
    pub audio_vae: Option<PathBuf>,
    pub duration_head: Option<PathBuf>,
}

impl PathFlags {
    /// Whether a split-only flag is set (`--video-vae-path` is not one: both layouts take it).
    pub fn is_split(&self) -> bool {
        self.transformer.is_some()
            || self.text_encoder.is_some()
            || self.audio_vae.is_some()
            || self.duration_head.is_some()
    }

    /// Whether no model file at all is given.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Resolved component paths. Only the components a pipeline asks for need to be present.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelPaths {
    pub layout: Layout,
    /// The monolithic checkpoint (monolith layout only).
    pub checkpoint: Option<PathBuf>,
    pub transformer: Option<PathBuf>,
    /// A Gemma root folder (Hugging Face layout) or a single text-encoder file (LTX-2.5).
    pub text_encoder: Option<PathBuf>,
    pub video_vae: Option<PathBuf>,
    pub audio_vae: Option<PathBuf>,
    pub duration_head: Option<PathBuf>,
}

impl ModelPaths {
    /// A monolithic checkpoint with its Gemma root (`None` where no prompt is encoded).
    pub fn monolith(checkpoint: PathBuf, gemma_root: Option<PathBuf>) -> Self {
        Self {
            layout: Layout::Monolith,
            checkpoint: Some(checkpoint.clone()),
            transformer: Some(checkpoint.clone()),
            text_encoder: gemma_root,
            video_vae: Some(checkpoint.clone()),
            audio_vae: Some(checkpoint.clone()),
            duration_head: Some(checkpoint),
        }
    }

    /// The layout rules over the command-line paths; `None` when no model file is given (the
    /// built-in tiny model stands in).
    pub fn from_flags(flags: PathFlags) -> Result<Option<Self>> {
        if flags.is_empty() {
            return Ok(None);
        }
        let transformer_override = flags.checkpoint.is_some()
            && flags.text_encoder.is_none()
            && flags.audio_vae.is_none()
            && flags.duration_head.is_none();
        if flags.is_split() && !transformer_override {
            if flags.checkpoint.is_some() || flags.gemma_root.is_some() {
                return Err(Error::InvalidArgument(
                    "the split flags (--text-encoder-path, --audio-vae-path, \
                     --duration-head-path) cannot be combined with --checkpoint-path / \
                     --gemma-root; --video-vae-path is allowed with either, --transformer-path \
                     replaces a checkpoint's transformer"
                        .into(),
                ));
            }
            return Ok(Some(Self {
                layout: Layout::Split,
                checkpoint: None,
                transformer: flags.transformer,
                text_encoder: flags.text_encoder,
                video_vae: flags.video_vae,
                audio_vae: flags.audio_vae,
                duration_head: flags.duration_head,
            }));
        }
        let Some(checkpoint) = flags.checkpoint else {
            return Err(Error::InvalidArgument(
                "--gemma-root / --video-vae-path need a model: --checkpoint-path (one file), or \
                 the split flags (--transformer-path, --text-encoder-path, --audio-vae-path, ...)"
                    .into(),
            ));
        };
        let mut paths = Self::monolith(checkpoint, flags.gemma_root);
        if let Some(vae) = flags.video_vae {
            paths.video_vae = Some(vae);
        }
        if let Some(t) = flags.transformer {
            paths.transformer = Some(t);
        }
        Ok(Some(paths))
    }

    /// The path of `component`, or an error naming the flag that gives it.
    pub fn get(&self, component: Component) -> Result<&Path> {
        let slot = match component {
            Component::Transformer => &self.transformer,
            Component::TextEncoder => &self.text_encoder,
            Component::VideoVae => &self.video_vae,
            Component::AudioVae => &self.audio_vae,
            Component::DurationHead => &self.duration_head,
        };
        slot.as_deref().ok_or_else(|| {
            let flag = match (self.layout, component) {
                (Layout::Monolith, Component::TextEncoder) => "--gemma-root",
                (Layout::Monolith, _) => "--checkpoint-path",
                (Layout::Split, c) => c.split_flag(),
            };
            Error::InvalidArgument(format!(
                "no {} given ({flag}): this run needs it",
                component.name()
            ))
        })
    }

    /// Refuses the set when one of `needed` is missing (before any work starts).
    pub fn require(&self, needed: &[Component]) -> Result<()> {
        needed.iter().try_for_each(|&c| self.get(c).map(|_| ()))
    }

    /// Every given path, with its component.
    pub fn given(&self) -> impl Iterator<Item = (Component, &Path)> {
        Component::ALL
            .into_iter()
            .filter_map(|c| self.get(c).ok().map(|p| (c, p)))
    }

    /// Checks that every given path exists: files, and for the text encoder a file or a folder;
    /// and that a GGUF file serves only as the transformer (GGUF files hold no VAE, vocoder or
    /// duration head).
    pub fn check_exist(&self) -> Result<()> {
        for (c, p) in self.given() {
            if c != Component::Transformer && p.is_file() && ltx_core::loader::gguf::is_gguf(p) {
                return Err(Error::InvalidArgument(format!(
                    "`{}` is a GGUF file, which holds a transformer only, not the {}: pass it as \
                     --transformer-path (with --checkpoint-path or the split flags for the other \
                     parts)",
                    p.display(),
                    c.name()
                )));
            }
            let ok = match c {
                Component::TextEncoder => p.is_file() || p.is_dir(),
                _ => p.is_file(),
            };
            if !ok {
                let what = match c {
                    Component::TextEncoder => "a file or a folder",
                    _ => "a file",
                };
                return Err(Error::InvalidArgument(format!(
                    "{} `{}` does not exist or is not {what}",
                    c.name(),
                    p.display()
                )));
            }
        }
        Ok(())
    }

    /// The files the embeddings processor reads, the transformer's first (its config and
    /// `gemma_source_checkpoint` are the ones read): in a split set also a single-file text
    /// encoder, which carries LTX-2.5's projection.
    pub fn embeddings_weight_paths(&self) -> Result<Vec<&Path>> {
        if let Some(checkpoint) = &self.checkpoint {
            return Ok(vec![checkpoint]);
        }
        let mut paths = vec![self.get(Component::Transformer)?];
        if self.layout == Layout::Split {
            if let Some(te) = self.text_encoder.as_deref().filter(|p| p.is_file()) {
                paths.push(te);
            }
        }
        Ok(paths)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Option<PathBuf> {
        Some(PathBuf::from(s))
    }

    #[test]
    fn layout_rules() {
        assert_eq!(ModelPaths::from_flags(PathFlags::default()).unwrap(), None);
        let mono = ModelPaths::from_flags(PathFlags {
            checkpoint: p("m.safetensors"),
            gemma_root: p("gemma"),
            video_vae: p("vae.safetensors"),
            ..Default::default()
        })
        .unwrap()
        .unwrap();
        assert_eq!(mono.layout, Layout::Monolith);
        assert_eq!(mono.video_vae, p("vae.safetensors"));
        assert_eq!(mono.audio_vae, p("m.safetensors"));
        assert_eq!(mono.duration_head, p("m.safetensors"));
        assert_eq!(
            mono.embeddings_weight_paths().unwrap(),
            vec![Path::new("m.safetensors")]
        );
        let err = ModelPaths::from_flags(PathFlags {
            checkpoint: p("m.safetensors"),
            duration_head: p("d.safetensors"),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("cannot be combined"), "{err}");
        let err = ModelPaths::from_flags(PathFlags {
            gemma_root: p("gemma"),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("--checkpoint-path"), "{err}");
        let split = ModelPaths::from_flags(PathFlags {
            transformer: p("t.safetensors"),
            video_vae: p("v.safetensors"),
            ..Default::default()
        })
        .unwrap()
        .unwrap();
        assert_eq!(split.layout, Layout::Split);
        split
            .require(&[Component::Transformer, Component::VideoVae])
            .unwrap();
        let err = split
            .require(&[Component::Transformer, Component::AudioVae])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("audio VAE") && err.contains("--audio-vae-path"),
            "{err}"
        );
        mono.require(&Component::ALL).unwrap();
        let err = ModelPaths::monolith("m".into(), None)
            .require(&[Component::TextEncoder])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--gemma-root"), "{err}");
        let err = split.check_exist().unwrap_err().to_string();
        assert!(err.contains("transformer `t.safetensors`"), "{err}");
    }
}

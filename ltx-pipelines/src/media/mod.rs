//! Media IO without ffmpeg (port of `ltx_pipelines/utils/media_io.py`).

pub mod audio;

pub use audio::{decode_audio_file, load_audio, write_wav, DecodedAudio};

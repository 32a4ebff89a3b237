//! Media IO without ffmpeg (port of `ltx_pipelines/utils/media_io.py`): audio files, still images,
//! H.264, AAC, MP4 writing (with box fix-ups) and MP4 reading.

use std::path::Path;

use crate::Error;

#[cfg(feature = "fdk-aac")]
mod aac;
pub mod audio;
mod h264;
pub mod image;
#[cfg_attr(not(feature = "fdk-aac"), allow(dead_code))]
mod mp4_boxes;
mod mp4_reader;
mod mp4_writer;
#[cfg(test)]
mod test_support;

/// The video items under their original module path (`media::video::Mp4Writer`, ...).
pub mod video {
    pub use super::h264::{crf_to_qp, encode_single_frame_round_trip, DEFAULT_VIDEO_CRF};
    pub use super::mp4_reader::{
        decode_video_frames, load_video_conditioning, probe_mp4, Mp4AudioInfo, Mp4Info,
    };
    pub use super::mp4_writer::Mp4Writer;
}

pub use audio::{decode_audio_file, load_audio, write_wav, DecodedAudio};
pub use image::{
    load_image, load_image_conditioning, resize_and_center_crop, resize_aspect_ratio_preserving,
    DEFAULT_IMAGE_CRF,
};
pub use video::{
    crf_to_qp, decode_video_frames, encode_single_frame_round_trip, load_video_conditioning,
    probe_mp4, Mp4AudioInfo, Mp4Info, Mp4Writer, DEFAULT_VIDEO_CRF,
};

/// Samples per channel in one AAC-LC frame.
const AAC_FRAME_LEN: usize = 1024;

/// A [`Error::Media`] about `path`.
fn media_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Media {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

//! Media IO without ffmpeg (port of `ltx_pipelines/utils/media_io.py`).

pub mod audio;
pub mod image;
pub mod video;

pub use audio::{decode_audio_file, load_audio, write_wav, DecodedAudio};
pub use image::{
    load_image, load_image_conditioning, resize_and_center_crop, resize_aspect_ratio_preserving,
    DEFAULT_IMAGE_CRF,
};
pub use video::{
    crf_to_qp, decode_video_frames, encode_single_frame_round_trip, load_video_conditioning,
    probe_mp4, Mp4AudioInfo, Mp4Info, Mp4Writer, DEFAULT_VIDEO_CRF,
};

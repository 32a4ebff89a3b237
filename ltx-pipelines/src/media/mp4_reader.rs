//! MP4 in: the probe (size, frame rate, frame count, audio track facts), H.264 decoding of the
//! first video track to RGB frames (OpenH264, demuxed with the `mp4` crate) and the conditioning
//! video preparation. Stands for `get_videostream_metadata`, `decode_video_from_file` and
//! `load_video_conditioning` of `ltx_pipelines/utils/media_io.py`.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use candle_core::{Device, Tensor};
use openh264::decoder::Decoder;
use openh264::formats::YUVSource;

use super::h264::avcc_to_annexb;
use super::media_err;
use crate::{Error, Result};

/// Audio track facts of an MP4.
#[derive(Clone, Debug, PartialEq)]
pub struct Mp4AudioInfo {
    pub sample_rate: u32,
    pub channels: u16,
    /// Seconds, after the edit list (encoder priming and padding removed) when there is one.
    pub duration: f64,
}

/// Facts about an MP4 file's first video track and first audio track.
#[derive(Clone, Debug, PartialEq)]
pub struct Mp4Info {
    pub width: u32,
    pub height: u32,
    /// Average frame rate: frames / track duration.
    pub fps: f64,
    pub frame_count: usize,
    /// Video track duration in seconds.
    pub duration: f64,
    /// The video sample entry (`avc1` for H.264).
    pub video_codec: String,
    pub audio: Option<Mp4AudioInfo>,
}

type Mp4File = mp4::Mp4Reader<BufReader<File>>;

/// Opens an MP4 and parses its header. The parser is a third-party crate fed untrusted bytes, so a
/// panic inside it is turned into an error too.
fn open_mp4(path: &Path) -> Result<Mp4File> {
    let file = File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let size = file
        .metadata()
        .map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    let reader = BufReader::new(file);
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        mp4::Mp4Reader::read_header(reader, size)
    })) {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(media_err(path, format!("not a readable MP4 ({e})"))),
        Err(_) => Err(media_err(path, "not a readable MP4 (malformed boxes)")),
    }
}

fn track_seconds(track: &mp4::Mp4Track) -> f64 {
    let mdhd = &track.trak.mdia.mdhd;
    if mdhd.timescale == 0 {
        0.0
    } else {
        mdhd.duration as f64 / mdhd.timescale as f64
    }
}

/// Average frame rate of a track: samples / duration (0 for a track without duration).
fn average_fps(track: &mp4::Mp4Track) -> f64 {
    let duration = track_seconds(track);
    if duration > 0.0 {
        track.sample_count() as f64 / duration
    } else {
        0.0
    }
}

/// The track of `kind` with the lowest id.
fn first_track(mp4: &Mp4File, kind: mp4::TrackType) -> Option<&mp4::Mp4Track> {
    mp4.tracks()
        .values()
        .filter(|t| t.track_type().ok() == Some(kind))
        .min_by_key(|t| t.track_id())
}

fn video_track<'a>(path: &Path, mp4: &'a Mp4File) -> Result<&'a mp4::Mp4Track> {
    first_track(mp4, mp4::TrackType::Video)
        .ok_or_else(|| media_err(path, "the file has no video track"))
}

fn sample_entry_name(track: &mp4::Mp4Track) -> String {
    track
        .box_type()
        .map(|b| b.to_string())
        .unwrap_or_else(|_| "an unsupported codec".to_string())
}

/// Reads the size, frame rate, frame count and audio track facts of an MP4.
pub fn probe_mp4(path: &Path) -> Result<Mp4Info> {
    let mp4 = open_mp4(path)?;
    let video = video_track(path, &mp4)?;
    let duration = track_seconds(video);
    let frame_count = video.sample_count() as usize;
    let fps = average_fps(video);
    let audio = match first_track(&mp4, mp4::TrackType::Audio) {
        None => None,
        Some(t) => {
            let sample_rate = t
                .sample_freq_index()
                .map(|f| f.freq())
                .unwrap_or(t.timescale());
            let channels = t.channel_config().map_or(0, |c| match c {
                mp4::ChannelConfig::Mono => 1,
                mp4::ChannelConfig::Stereo => 2,
                mp4::ChannelConfig::Three => 3,
                mp4::ChannelConfig::Four => 4,
                mp4::ChannelConfig::Five => 5,
                mp4::ChannelConfig::FiveOne => 6,
                mp4::ChannelConfig::SevenOne => 8,
            });
            let movie_scale = mp4.timescale();
            let edited: Option<f64> = t.trak.edts.as_ref().and_then(|e| e.elst.as_ref()).map(|l| {
                l.entries
                    .iter()
                    // an empty edit (media_time -1) is a gap, not audio
                    .filter(|e| e.media_time != u32::MAX as u64 && e.media_time != u64::MAX)
                    .map(|e| e.segment_duration as f64)
                    .sum::<f64>()
                    / movie_scale.max(1) as f64
            });
            Some(Mp4AudioInfo {
                sample_rate,
                channels,
                duration: edited.unwrap_or_else(|| track_seconds(t)),
            })
        }
    };
    Ok(Mp4Info {
        width: u32::from(video.width()),
        height: u32::from(video.height()),
        fps,
        frame_count,
        duration,
        video_codec: sample_entry_name(video),
        audio,
    })
}

/// Decodes the first video track of an H.264 MP4 into `[F, H, W, 3]` u8 RGB frames (CPU) and its
/// average frame rate, stopping after `max_frames` when given (the reference's
/// `decode_video_from_file` with its `frame_cap`).
pub fn decode_video_frames(path: &Path, max_frames: Option<usize>) -> Result<(Tensor, f64)> {
    let mut mp4 = open_mp4(path)?;
    let video = video_track(path, &mp4)?;
    let Some(avc1) = video.trak.mdia.minf.stbl.stsd.avc1.as_ref() else {
        return Err(media_err(
            path,
            format!(
                "the video codec is {}, not H.264: only H.264 MP4 can be decoded without ffmpeg",
                sample_entry_name(video)
            ),
        ));
    };
    let track_id = video.track_id();
    let count = video.sample_count();
    let fps = average_fps(video);
    let length_size = usize::from(avc1.avcc.length_size_minus_one & 3) + 1;
    // parameter sets live in the avcC box, not in the samples: the decoder needs them in-band
    let mut header = Vec::new();
    for nal in avc1
        .avcc
        .sequence_parameter_sets
        .iter()
        .chain(&avc1.avcc.picture_parameter_sets)
    {
        header.extend_from_slice(&[0, 0, 0, 1]);
        header.extend_from_slice(&nal.bytes);
    }
    let limit = max_frames.unwrap_or(usize::MAX);
    let mut decoder = Decoder::new()
        .map_err(|e| media_err(path, format!("cannot create the H.264 decoder ({e})")))?;
    let mut rgb: Vec<u8> = Vec::new();
    let mut size: Option<(usize, usize)> = None;
    let mut frames = 0usize;
    let mut packet = header;
    for id in 1..=count {
        if frames >= limit {
            break;
        }
        let sample = match mp4.read_sample(track_id, id) {
            Ok(Some(s)) => s,
            Ok(None) => break,
            Err(e) => {
                return Err(media_err(
                    path,
                    format!("cannot read video sample {id} ({e})"),
                ))
            }
        };
        avcc_to_annexb(&sample.bytes, length_size, &mut packet)
            .map_err(|r| media_err(path, format!("video sample {id}: {r}")))?;
        let decoded = decoder
            .decode(&packet)
            .map_err(|e| media_err(path, format!("H.264 decoding failed at sample {id} ({e})")))?;
        if let Some(pic) = decoded {
            push_frame(path, &pic, &mut rgb, &mut size)?;
            frames += 1;
        }
        packet.clear();
    }
    if frames < limit {
        let rest = decoder
            .flush_remaining()
            .map_err(|e| media_err(path, format!("H.264 decoding failed at the end ({e})")))?;
        for pic in rest.iter().take(limit - frames) {
            push_frame(path, pic, &mut rgb, &mut size)?;
            frames += 1;
        }
    }
    let Some((w, h)) = size else {
        return Err(media_err(path, "no video frame could be decoded"));
    };
    Ok((Tensor::from_vec(rgb, (frames, h, w, 3), &Device::Cpu)?, fps))
}

/// A conditioning video as the reference's `load_video_conditioning`: up to `frame_cap` frames
/// decoded, each resized to cover `height x width` and centre-cropped, then mapped from 0..255 to
/// [-1, 1]. Returns `[1, 3, F, height, width]` f32 on the CPU (the caller casts and moves it).
pub fn load_video_conditioning(
    path: &Path,
    height: usize,
    width: usize,
    frame_cap: usize,
) -> Result<Tensor> {
    if frame_cap == 0 {
        return Err(Error::InvalidArgument(format!(
            "video `{}`: at least one frame must be read",
            path.display()
        )));
    }
    let (frames, _fps) = decode_video_frames(path, Some(frame_cap))?;
    // resize a few frames at a time: the whole stack in f32 at the source size can be gigabytes
    const CHUNK: usize = 8;
    let n = frames.dim(0)?;
    let mut parts = Vec::with_capacity(n.div_ceil(CHUNK));
    for start in (0..n).step_by(CHUNK) {
        let len = CHUNK.min(n - start);
        let resized = crate::media::image::resize_and_center_crop(
            &frames.narrow(0, start, len)?,
            height,
            width,
        )?;
        parts.push(((resized / 127.5)? - 1.0)?);
    }
    Ok(Tensor::cat(&parts, 2)?)
}

/// Appends a decoded picture as RGB to `rgb`, checking that every frame has the same size.
fn push_frame(
    path: &Path,
    pic: &openh264::decoder::DecodedYUV<'_>,
    rgb: &mut Vec<u8>,
    size: &mut Option<(usize, usize)>,
) -> Result<()> {
    let (w, h) = pic.dimensions();
    match *size {
        None => *size = Some((w, h)),
        Some(s) if s != (w, h) => return Err(media_err(path, "the frame size changes mid-stream")),
        _ => {}
    }
    let start = rgb.len();
    rgb.resize(start + w * h * 3, 0);
    pic.write_rgb8(&mut rgb[start..]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_videos_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.mp4");
        assert!(matches!(
            decode_video_frames(&missing, None),
            Err(Error::Io { .. })
        ));
        let junk = dir.path().join("junk.mp4");
        std::fs::write(
            &junk,
            b"\x00\x00\x00\x10ftypjunk, then nothing useful at all",
        )
        .unwrap();
        assert!(matches!(
            decode_video_frames(&junk, None),
            Err(Error::Media { .. })
        ));
        assert!(matches!(probe_mp4(&junk), Err(Error::Media { .. })));
        let text = dir.path().join("text.mp4");
        std::fs::write(&text, b"hello, this is plain text and not a video").unwrap();
        assert!(matches!(
            decode_video_frames(&text, Some(1)),
            Err(Error::Media { .. })
        ));
    }
}

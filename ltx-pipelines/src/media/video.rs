//! Video files in and out (the video half of `ltx_pipelines/utils/media_io.py`), without ffmpeg:
//! H.264 (yuv420p, BT.601 limited range like swscale's default) with OpenH264, MP4 muxing with
//! muxide, AAC-LC with the FDK encoder (cargo feature `aac`, on by default), MP4 demuxing with the
//! `mp4` crate.
//!
//! The reference encodes with libx264 at its default CRF 23. OpenH264 has no CRF, so quality is
//! set through the quantiser instead (see [`crf_to_qp`]).

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use ltx_core::types::Audio;
use muxide::api::{MuxerBuilder, VideoCodec};
use openh264::decoder::Decoder;
use openh264::encoder::{
    BitRate, Encoder, EncoderConfig, FrameRate, IntraFramePeriod, QpRange, RateControlMode,
};
use openh264::formats::{RgbSliceU8, YUVBuffer, YUVSource};
use openh264::OpenH264API;

use crate::media::audio::partial_path;
use crate::{Error, Result};

/// libx264's default CRF, which the reference's `encode_video` uses.
pub const DEFAULT_VIDEO_CRF: f64 = 23.0;

/// Samples per channel in one AAC-LC frame.
const AAC_FRAME_LEN: usize = 1024;

/// Sample rates an AAC `AudioSpecificConfig` can signal by index.
const AAC_RATES: [u32; 12] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000,
];

/// OpenH264 clamps the quantiser of its rate-controlled modes to at least this value.
const OPENH264_MIN_QP: u8 = 12;

/// x264's offset between P- and I-frame quantisers, `6 * log2(ipratio)` with its default ipratio 1.4.
fn x264_ip_offset() -> f64 {
    6.0 * 1.4f64.log2()
}

/// Maps an x264 CRF to the H.264 quantiser of an intra frame, the frame type the conditioning
/// round trip produces.
///
/// An approximation: x264 derives each frame's QP from the CRF, the frame's complexity and per-block
/// adaptive quantisation, where OpenH264 can only hold the QP in a range. Measured with the
/// reference's libx264 (`preset=veryfast`) on single frames, `crf=c` produces the same bitstream
/// size as `qp=c`; in x264's constant-QP mode an I frame is coded at `qp - 6·log2(1.4)` ≈ `qp - 2.9`.
/// So the I-frame QP is `round(crf - 2.9)`, clamped to 0..=51. OpenH264's rate control further
/// raises QPs below [`OPENH264_MIN_QP`] to 12, so CRFs under ~15 all give QP 12 (x264 would go
/// finer); CRF 0 (lossless in x264) skips the round trip entirely, as in the reference.
pub fn crf_to_qp(crf: f64) -> u8 {
    (crf - x264_ip_offset()).round().clamp(0.0, 51.0) as u8
}

fn mem_err(reason: impl Into<String>) -> Error {
    Error::Media {
        path: PathBuf::from("<in-memory H.264>"),
        reason: reason.into(),
    }
}

fn media_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Media {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// An OpenH264 encoder whose quantiser stays in `qp_min..=qp_max` and which never drops frames.
fn h264_encoder(fps: f64, bits_per_second: u32, qp_min: u8, qp_max: u8) -> Result<Encoder> {
    let qp_max = qp_max.clamp(OPENH264_MIN_QP, 51);
    let qp_min = qp_min.clamp(OPENH264_MIN_QP, qp_max);
    let config = EncoderConfig::new()
        .rate_control_mode(RateControlMode::Quality)
        .skip_frames(false)
        .qp(QpRange::new(qp_min, qp_max))
        .bitrate(BitRate::from_bps(bits_per_second))
        .max_frame_rate(FrameRate::from_hz(fps as f32))
        // x264's default keyint: a keyframe at least every 250 frames for seeking
        .intra_frame_period(IntraFramePeriod::from_num_frames(250));
    Encoder::with_api_config(OpenH264API::from_source(), config)
        .map_err(|e| mem_err(format!("cannot create the H.264 encoder ({e})")))
}

/// NAL unit types of an Annex-B stream.
fn nal_types(annexb: &[u8]) -> impl Iterator<Item = u8> + '_ {
    annexb
        .windows(4)
        .filter(|w| w[0] == 0 && w[1] == 0 && w[2] == 1)
        .map(|w| w[3] & 0x1f)
}

/// Whether an Annex-B access unit holds an IDR slice (a keyframe an MP4 may start from).
fn is_idr(annexb: &[u8]) -> bool {
    nal_types(annexb).any(|t| t == 5)
}

/// Encodes `[H, W, 3]` u8 RGB (already even-sized) as one YUV 4:2:0 H.264 frame.
fn encode_frame(encoder: &mut Encoder, rgb: &[u8], width: usize, height: usize) -> Result<Vec<u8>> {
    let yuv = YUVBuffer::from_rgb8_source(RgbSliceU8::new(rgb, (width, height)));
    let bits = encoder
        .encode(&yuv)
        .map_err(|e| mem_err(format!("H.264 encoding failed ({e})")))?
        .to_vec();
    if bits.is_empty() {
        return Err(mem_err("the H.264 encoder dropped a frame"));
    }
    Ok(bits)
}

/// The reference's `preprocess(image, crf)`: a single-frame H.264 round trip that gives a
/// conditioning image the compression artefacts the model saw in training.
///
/// `rgb` is `height x width x 3` u8. `crf == 0` returns the image unchanged (full size); otherwise
/// the image is cropped to even sizes (`height / 2 * 2` by `width / 2 * 2`, as the reference does
/// for the codec) and that cropped size comes back. CRF is approximated by a fixed quantiser: see
/// [`crf_to_qp`].
pub fn encode_single_frame_round_trip(
    rgb: &[u8],
    width: usize,
    height: usize,
    crf: f64,
) -> Result<Vec<u8>> {
    if rgb.len() != width * height * 3 {
        return Err(Error::InvalidArgument(format!(
            "round trip: {} bytes for a {width}x{height} RGB image",
            rgb.len()
        )));
    }
    if !(crf >= 0.0 && crf.is_finite()) {
        return Err(Error::InvalidArgument(format!(
            "CRF must be >= 0, got {crf}"
        )));
    }
    if crf == 0.0 {
        return Ok(rgb.to_vec());
    }
    let (ew, eh) = (width / 2 * 2, height / 2 * 2);
    if ew == 0 || eh == 0 {
        return Err(Error::InvalidArgument(format!(
            "round trip: a {width}x{height} image is too small for H.264"
        )));
    }
    let cropped: Vec<u8> = (0..eh)
        .flat_map(|y| &rgb[y * width * 3..(y * width + ew) * 3])
        .copied()
        .collect();
    let qp = crf_to_qp(crf);
    let mut encoder = h264_encoder(1.0, 100_000_000, qp, qp)?;
    let bits = encode_frame(&mut encoder, &cropped, ew, eh)?;
    let mut decoder =
        Decoder::new().map_err(|e| mem_err(format!("cannot create the H.264 decoder ({e})")))?;
    let mut out = vec![0u8; ew * eh * 3];
    let got = match decoder
        .decode(&bits)
        .map_err(|e| mem_err(format!("H.264 decoding failed ({e})")))?
    {
        Some(pic) => {
            pic.write_rgb8(&mut out);
            true
        }
        None => false,
    };
    if !got {
        let rest = decoder
            .flush_remaining()
            .map_err(|e| mem_err(format!("H.264 decoding failed ({e})")))?;
        let pic = rest
            .first()
            .ok_or_else(|| mem_err("the H.264 decoder returned no picture"))?;
        pic.write_rgb8(&mut out);
    }
    Ok(out)
}

/// `[1, 2, N]` or `[2, N]` audio as `[left, right]` f32 samples.
fn stereo_channels(audio: &Audio) -> Result<Vec<Vec<f32>>> {
    let wav = audio
        .waveform
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?;
    let wav = match wav.dims() {
        [1, 2, _] => wav.squeeze(0)?,
        [2, _] => wav,
        d => {
            return Err(Error::InvalidArgument(format!(
                "expected stereo audio [1, 2, N] or [2, N], got {d:?}"
            )))
        }
    };
    Ok(wav.to_vec2()?)
}

#[cfg(feature = "aac")]
mod aac {
    //! AAC-LC stereo with the FDK encoder, as ADTS frames (what muxide takes).

    use fdk_aac::enc::{AudioObjectType, BitRate, ChannelMode, Encoder, EncoderParams, Transport};

    use super::AAC_FRAME_LEN;

    pub(super) struct AacStream {
        encoder: Encoder,
        /// Encoder delay (priming samples per channel) that an MP4 edit list hides.
        pub delay: usize,
        /// Samples per channel fed so far.
        pub samples: usize,
        pub frames: Vec<Vec<u8>>,
        out: Vec<u8>,
    }

    impl AacStream {
        pub fn new(sample_rate: u32) -> Result<Self, String> {
            // ffmpeg's native AAC encoder defaults to 128 kb/s for stereo; lower rates cap lower
            let bit_rate = if sample_rate >= 32000 {
                128_000
            } else {
                96_000
            };
            let encoder = Encoder::new(EncoderParams {
                bit_rate: BitRate::Cbr(bit_rate),
                sample_rate,
                transport: Transport::Adts,
                channels: ChannelMode::Stereo,
                audio_object_type: AudioObjectType::Mpeg4LowComplexity,
            })
            .map_err(|e| format!("cannot create the AAC encoder at {sample_rate} Hz ({e})"))?;
            let info = encoder
                .info()
                .map_err(|e| format!("AAC encoder info ({e})"))?;
            if info.frameLength as usize != AAC_FRAME_LEN {
                return Err(format!("unexpected AAC frame length {}", info.frameLength));
            }
            Ok(Self {
                encoder,
                delay: info.nDelay as usize,
                samples: 0,
                frames: Vec::new(),
                out: vec![0u8; (info.maxOutBufBytes as usize).max(8192)],
            })
        }

        /// Encodes interleaved stereo i16 samples.
        pub fn feed(&mut self, interleaved: &[i16]) -> Result<(), String> {
            self.push(interleaved)?;
            self.samples += interleaved.len() / 2;
            Ok(())
        }

        fn push(&mut self, interleaved: &[i16]) -> Result<(), String> {
            let mut pos = 0;
            while pos < interleaved.len() {
                let info = self
                    .encoder
                    .encode(&interleaved[pos..], &mut self.out)
                    .map_err(|e| format!("AAC encoding failed ({e})"))?;
                if info.output_size > 0 {
                    self.frames.push(self.out[..info.output_size].to_vec());
                }
                if info.input_consumed == 0 && info.output_size == 0 {
                    return Err("the AAC encoder stopped taking input".into());
                }
                pos += info.input_consumed;
            }
            Ok(())
        }

        /// Pushes silence until every fed sample (plus the encoder delay) is in a frame, then
        /// keeps exactly those frames.
        pub fn flush(&mut self) -> Result<(), String> {
            let needed = (self.samples + self.delay).div_ceil(AAC_FRAME_LEN);
            let silence = vec![0i16; AAC_FRAME_LEN * 2];
            // a few frames beyond what the delay calls for, in case the encoder buffers more
            let mut budget = needed + 8;
            while self.frames.len() < needed {
                if budget == 0 {
                    return Err("the AAC encoder did not flush".into());
                }
                budget -= 1;
                self.push(&silence)?;
            }
            self.frames.truncate(needed);
            Ok(())
        }
    }
}

enum AudioSink {
    #[cfg(feature = "aac")]
    Aac(aac::AacStream),
    #[cfg(not(feature = "aac"))]
    Wav(Vec<Vec<f32>>),
}

/// Streams RGB frames (and optionally stereo audio) into an MP4: H.264 yuv420p video and AAC-LC
/// audio (or, without the `aac` feature, a WAV file beside the MP4).
///
/// Everything goes to a hidden sibling file that [`Mp4Writer::finish`] renames into place; a writer
/// dropped without `finish` (an error, a panic) removes it, so no half-written file ever sits under
/// the requested name. The muxer keeps the compressed streams in memory until `finish`.
pub struct Mp4Writer {
    path: PathBuf,
    tmp: PathBuf,
    width: usize,
    height: usize,
    fps: f64,
    encoder: Encoder,
    muxer: Option<muxide::api::Muxer<Vec<u8>>>,
    frames: u64,
    audio_rate: Option<u32>,
    audio: Option<AudioSink>,
    done: bool,
}

impl Mp4Writer {
    /// Opens `path` for a `width x height` video at `fps`, with a stereo audio track at
    /// `audio_rate` Hz when given. Width and height must be even (yuv420p).
    pub fn create(
        path: &Path,
        width: usize,
        height: usize,
        fps: f64,
        audio_rate: Option<u32>,
    ) -> Result<Self> {
        if width == 0 || height == 0 || width % 2 != 0 || height % 2 != 0 {
            return Err(Error::InvalidArgument(format!(
                "video size {width}x{height}: width and height must be even and > 0 (yuv420p)"
            )));
        }
        if width.max(height) > 3840 || width.min(height) > 2160 {
            return Err(Error::InvalidArgument(format!(
                "video size {width}x{height}: OpenH264 encodes up to 3840x2160 (or 2160x3840)"
            )));
        }
        if !(fps > 0.0 && fps.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "fps must be > 0, got {fps}"
            )));
        }
        if let Some(rate) = audio_rate {
            if !AAC_RATES.contains(&rate) {
                return Err(Error::InvalidArgument(format!(
                    "audio rate {rate} Hz: AAC needs one of {AAC_RATES:?}"
                )));
            }
        }
        let tmp = partial_path(path);
        // create the file now so an unwritable destination fails before any encoding work
        File::create(&tmp).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let built = Self::build_streams(path, width, height, fps, audio_rate);
        let (encoder, muxer, audio) = match built {
            Ok(parts) => parts,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        Ok(Self {
            path: path.to_path_buf(),
            tmp,
            width,
            height,
            fps,
            encoder,
            muxer: Some(muxer),
            frames: 0,
            audio_rate,
            audio,
            done: false,
        })
    }

    fn build_streams(
        path: &Path,
        width: usize,
        height: usize,
        fps: f64,
        audio_rate: Option<u32>,
    ) -> Result<(Encoder, muxide::api::Muxer<Vec<u8>>, Option<AudioSink>)> {
        // libx264 at CRF 23 codes I frames near QP 20 and P frames near QP 23: keep the QP there;
        // the bitrate target only steers the rate control inside that range
        let bits = (0.1 * (width * height) as f64 * fps).clamp(100e3, 50e6) as u32;
        let encoder = h264_encoder(
            fps,
            bits,
            crf_to_qp(DEFAULT_VIDEO_CRF),
            DEFAULT_VIDEO_CRF as u8,
        )?;
        #[allow(unused_mut)]
        let mut builder =
            MuxerBuilder::new(Vec::new()).video(VideoCodec::H264, width as u32, height as u32, fps);
        let mut audio = None;
        if let Some(rate) = audio_rate {
            #[cfg(feature = "aac")]
            {
                builder = builder.audio(
                    muxide::api::AudioCodec::Aac(muxide::api::AacProfile::Lc),
                    rate,
                    2,
                );
                audio = Some(AudioSink::Aac(
                    aac::AacStream::new(rate).map_err(|r| media_err(path, r))?,
                ));
            }
            #[cfg(not(feature = "aac"))]
            {
                let _ = rate;
                audio = Some(AudioSink::Wav(vec![Vec::new(), Vec::new()]));
            }
        }
        let muxer = builder
            .build()
            .map_err(|e| media_err(path, format!("cannot set up the MP4 muxer ({e})")))?;
        Ok((encoder, muxer, audio))
    }

    /// Appends `[F, H, W, 3]` u8 RGB frames (any device). May be called once per decoded chunk.
    pub fn write_frames(&mut self, frames: &Tensor) -> Result<()> {
        let dims = frames.dims();
        if dims.len() != 4 || dims[1] != self.height || dims[2] != self.width || dims[3] != 3 {
            return Err(Error::InvalidArgument(format!(
                "expected frames [F, {}, {}, 3], got {dims:?}",
                self.height, self.width
            )));
        }
        if frames.dtype() != DType::U8 {
            return Err(Error::InvalidArgument(format!(
                "expected u8 frames, got {:?}",
                frames.dtype()
            )));
        }
        let data: Vec<u8> = frames.to_device(&Device::Cpu)?.flatten_all()?.to_vec1()?;
        let frame_len = self.width * self.height * 3;
        let path = self.path.clone();
        let muxer = self
            .muxer
            .as_mut()
            .ok_or_else(|| media_err(&path, "the writer is finished"))?;
        for rgb in data.chunks_exact(frame_len) {
            let bits = encode_frame(&mut self.encoder, rgb, self.width, self.height)?;
            let pts = self.frames as f64 / self.fps;
            muxer
                .write_video(pts, &bits, is_idr(&bits))
                .map_err(|e| media_err(&path, format!("MP4 muxing failed ({e})")))?;
            self.frames += 1;
        }
        Ok(())
    }

    /// Appends stereo audio (`[1, 2, N]` or `[2, N]`, [-1, 1]) at the rate given to `create`.
    /// Samples are clipped and scaled by 32767 to 16 bits, as the reference does.
    pub fn write_audio(&mut self, audio: &Audio) -> Result<()> {
        let Some(rate) = self.audio_rate else {
            return Err(Error::InvalidArgument(
                "this writer was created without an audio track".into(),
            ));
        };
        if audio.sampling_rate != rate {
            return Err(Error::InvalidArgument(format!(
                "audio at {} Hz, but the track was created for {rate} Hz",
                audio.sampling_rate
            )));
        }
        let channels = stereo_channels(audio)?;
        match self.audio.as_mut() {
            #[cfg(feature = "aac")]
            Some(AudioSink::Aac(stream)) => {
                let interleaved: Vec<i16> = channels[0]
                    .iter()
                    .zip(&channels[1])
                    .flat_map(|(l, r)| [to_i16(*l), to_i16(*r)])
                    .collect();
                stream
                    .feed(&interleaved)
                    .map_err(|reason| media_err(&self.path, reason))
            }
            #[cfg(not(feature = "aac"))]
            Some(AudioSink::Wav(store)) => {
                for (dst, src) in store.iter_mut().zip(channels) {
                    dst.extend(src);
                }
                Ok(())
            }
            None => Err(media_err(&self.path, "the writer is finished")),
        }
    }

    /// Number of video frames written so far.
    pub fn frames_written(&self) -> u64 {
        self.frames
    }

    /// Finalises the MP4 and moves it to the requested path, which it returns.
    pub fn finish(mut self) -> Result<PathBuf> {
        // on error `self` is dropped with `done == false`, which removes the partial file
        let bytes = self.finish_container()?;
        let io_err = |source| Error::Io {
            path: self.path.clone(),
            source,
        };
        let mut file = File::create(&self.tmp).map_err(io_err)?;
        file.write_all(&bytes).map_err(io_err)?;
        file.sync_all().map_err(io_err)?;
        drop(file);
        #[cfg(not(feature = "aac"))]
        if let Some(AudioSink::Wav(channels)) = self.audio.take() {
            let sidecar = self.path.with_extension("wav");
            tracing::warn!(
                "built without the `aac` feature: the audio goes to {} beside the video",
                sidecar.display()
            );
            let n = channels[0].len();
            let waveform = Tensor::from_vec(channels.concat(), (1, 2, n), &Device::Cpu)?;
            crate::media::audio::write_wav(
                &sidecar,
                &Audio {
                    waveform,
                    sampling_rate: self.audio_rate.unwrap_or(0),
                },
            )?;
        }
        std::fs::rename(&self.tmp, &self.path).map_err(io_err)?;
        self.done = true;
        tracing::info!("video saved to {}", self.path.display());
        Ok(self.path.clone())
    }

    /// Flushes the audio encoder, muxes its frames and returns the finished MP4 bytes.
    fn finish_container(&mut self) -> Result<Vec<u8>> {
        let path = self.path.clone();
        let mux_err =
            |e: muxide::api::MuxerError| media_err(&path, format!("MP4 muxing failed ({e})"));
        let mut muxer = self
            .muxer
            .take()
            .ok_or_else(|| media_err(&path, "the writer is finished"))?;
        if self.frames == 0 {
            return Err(Error::InvalidArgument(format!(
                "{}: no video frames were written",
                path.display()
            )));
        }
        #[cfg(feature = "aac")]
        let mut edit = None;
        #[cfg(feature = "aac")]
        if let (Some(AudioSink::Aac(stream)), Some(rate)) = (self.audio.as_mut(), self.audio_rate) {
            if stream.samples > 0 {
                stream.flush().map_err(|r| media_err(&path, r))?;
                for (k, frame) in stream.frames.iter().enumerate() {
                    let pts = (k * AAC_FRAME_LEN) as f64 / rate as f64;
                    muxer.write_audio(pts, frame).map_err(mux_err)?;
                }
                edit = Some((stream.frames.len(), stream.delay, stream.samples, rate));
            }
        }
        muxer.finish_in_place().map_err(mux_err)?;
        #[allow(unused_mut)]
        let mut bytes = muxer.into_writer();
        // the encoder's priming samples precede the audio: an edit list tells players to skip
        // them, as ffmpeg's MP4 muxer does, so audio and video stay in sync
        #[cfg(feature = "aac")]
        if let Some((frames, delay, samples, rate)) = edit {
            bytes = mp4_boxes::fix_audio_track(bytes, frames, delay, samples, rate)
                .map_err(|r| media_err(&path, format!("cannot fix up the audio track: {r}")))?;
        }
        Ok(bytes)
    }
}

impl Drop for Mp4Writer {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// The reference's int16 conversion: clip to [-1, 1], scale by 32767, truncate.
#[cfg_attr(not(feature = "aac"), allow(dead_code))]
fn to_i16(x: f32) -> i16 {
    (x.clamp(-1.0, 1.0) * 32767.0) as i16
}

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

fn video_track<'a>(path: &Path, mp4: &'a Mp4File) -> Result<&'a mp4::Mp4Track> {
    let mut tracks: Vec<&mp4::Mp4Track> = mp4
        .tracks()
        .values()
        .filter(|t| matches!(t.track_type(), Ok(mp4::TrackType::Video)))
        .collect();
    tracks.sort_by_key(|t| t.track_id());
    tracks
        .first()
        .copied()
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
    let fps = if duration > 0.0 {
        frame_count as f64 / duration
    } else {
        0.0
    };
    let mut audio_tracks: Vec<&mp4::Mp4Track> = mp4
        .tracks()
        .values()
        .filter(|t| matches!(t.track_type(), Ok(mp4::TrackType::Audio)))
        .collect();
    audio_tracks.sort_by_key(|t| t.track_id());
    let audio = match audio_tracks.first() {
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
    let duration = track_seconds(video);
    let fps = if duration > 0.0 {
        count as f64 / duration
    } else {
        0.0
    };
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

/// Rewrites length-prefixed NAL units (MP4 `avc1` samples) as start-code-prefixed Annex-B,
/// appending to `out`.
fn avcc_to_annexb(
    sample: &[u8],
    length_size: usize,
    out: &mut Vec<u8>,
) -> std::result::Result<(), String> {
    let mut pos = 0;
    while pos < sample.len() {
        if pos + length_size > sample.len() {
            return Err("truncated NAL length".into());
        }
        let len = sample[pos..pos + length_size]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        pos += length_size;
        if len > sample.len() - pos {
            return Err("a NAL unit runs past the end of its sample".into());
        }
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(&sample[pos..pos + len]);
        pos += len;
    }
    Ok(())
}

#[cfg_attr(not(feature = "aac"), allow(dead_code))]
mod mp4_boxes {
    //! Just enough ISO-BMFF box surgery to fix up muxide's AAC track:
    //! - muxide times audio on a 90 kHz clock; readers that take the media timescale for the sample
    //!   rate (symphonia among them) then misjudge the length, so the track is retimed in place to
    //!   its sample rate (`mdhd` timescale and duration, `stts` deltas of 1024);
    //! - muxide writes no edit list: one is inserted into the sound track (`edts/elst`) to skip the
    //!   encoder's priming samples, the parent sizes grow and, since the `moov` precedes the `mdat`
    //!   (fast start), every chunk offset shifts by the growth.

    type R<T> = std::result::Result<T, String>;

    #[derive(Clone, Copy, Debug)]
    struct BoxAt {
        start: usize,
        size: usize,
        header: usize,
        kind: [u8; 4],
    }

    fn be32(buf: &[u8], at: usize) -> R<u32> {
        buf.get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| "truncated box".to_string())
    }

    /// The boxes laid end to end in `buf[start..end]`.
    fn children(buf: &[u8], start: usize, end: usize) -> R<Vec<BoxAt>> {
        let mut out = Vec::new();
        let mut pos = start;
        while pos + 8 <= end {
            let size32 = be32(buf, pos)? as usize;
            let kind = [buf[pos + 4], buf[pos + 5], buf[pos + 6], buf[pos + 7]];
            let (size, header) = match size32 {
                0 => (end - pos, 8),
                1 => {
                    let hi = be32(buf, pos + 8)? as u64;
                    let lo = be32(buf, pos + 12)? as u64;
                    (((hi << 32) | lo) as usize, 16)
                }
                n => (n, 8),
            };
            if size < header || pos + size > end {
                return Err(format!(
                    "box {:?} overruns its parent",
                    String::from_utf8_lossy(&kind)
                ));
            }
            out.push(BoxAt {
                start: pos,
                size,
                header,
                kind,
            });
            pos += size;
        }
        Ok(out)
    }

    fn inner(buf: &[u8], parent: BoxAt) -> R<Vec<BoxAt>> {
        children(
            buf,
            parent.start + parent.header,
            parent.start + parent.size,
        )
    }

    fn find(list: &[BoxAt], kind: &[u8; 4]) -> Option<BoxAt> {
        list.iter().copied().find(|b| &b.kind == kind)
    }

    fn path(buf: &[u8], from: BoxAt, kinds: &[&[u8; 4]]) -> R<Option<BoxAt>> {
        let mut cur = from;
        for kind in kinds {
            match find(&inner(buf, cur)?, kind) {
                Some(b) => cur = b,
                None => return Ok(None),
            }
        }
        Ok(Some(cur))
    }

    /// `timescale` of an `mvhd` / `mdhd` full box (versions 0 and 1).
    fn timescale(buf: &[u8], b: BoxAt) -> R<u32> {
        let body = b.start + b.header;
        let at = if buf.get(body) == Some(&1) {
            body + 20
        } else {
            body + 12
        };
        be32(buf, at)
    }

    fn put32(buf: &mut [u8], at: usize, v: u32) {
        buf[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }

    /// Retimes the sound track to `rate` and adds an edit list that starts `delay` samples into the
    /// media and lasts `samples` samples, so players skip the encoder's priming samples and the
    /// trailing padding. `frames` is the number of 1024-sample AAC frames in the track.
    pub(super) fn fix_audio_track(
        mut mp4: Vec<u8>,
        frames: usize,
        delay: usize,
        samples: usize,
        rate: u32,
    ) -> R<Vec<u8>> {
        let top = children(&mp4, 0, mp4.len())?;
        let moov = find(&top, b"moov").ok_or("no moov box")?;
        let mdat = find(&top, b"mdat").ok_or("no mdat box")?;
        if moov.header != 8 {
            return Err("64-bit moov size".into());
        }
        let movie_scale = {
            let mvhd = find(&inner(&mp4, moov)?, b"mvhd").ok_or("no mvhd box")?;
            timescale(&mp4, mvhd)?
        };
        let mut sound = None;
        for trak in inner(&mp4, moov)?
            .into_iter()
            .filter(|b| &b.kind == b"trak")
        {
            let Some(hdlr) = path(&mp4, trak, &[b"mdia", b"hdlr"])? else {
                continue;
            };
            // full-box header (4) + pre_defined (4), then the handler type
            let at = hdlr.start + hdlr.header + 8;
            if mp4.get(at..at + 4) == Some(b"soun".as_slice()) {
                sound = Some(trak);
                break;
            }
        }
        let trak = sound.ok_or("no sound track")?;
        let trak_children = inner(&mp4, trak)?;
        if find(&trak_children, b"edts").is_some() || trak.header != 8 {
            return Ok(mp4);
        }
        let tkhd = find(&trak_children, b"tkhd").ok_or("no tkhd box")?;

        // retime: media timescale = sample rate, every AAC frame lasts 1024 ticks
        let mdhd = path(&mp4, trak, &[b"mdia", b"mdhd"])?.ok_or("no mdhd box")?;
        let body = mdhd.start + mdhd.header;
        let total = (frames * super::AAC_FRAME_LEN) as u64;
        if mp4.get(body) == Some(&1) {
            put32(&mut mp4, body + 20, rate);
            mp4[body + 24..body + 32].copy_from_slice(&total.to_be_bytes());
        } else {
            put32(&mut mp4, body + 12, rate);
            put32(
                &mut mp4,
                body + 16,
                u32::try_from(total).map_err(|_| "audio too long")?,
            );
        }
        let stts = path(&mp4, trak, &[b"mdia", b"minf", b"stbl", b"stts"])?.ok_or("no stts box")?;
        let body = stts.start + stts.header;
        let entries = be32(&mp4, body + 4)? as usize;
        let mut counted = 0usize;
        for i in 0..entries {
            let at = body + 8 + 8 * i;
            counted += be32(&mp4, at)? as usize;
            put32(&mut mp4, at + 4, super::AAC_FRAME_LEN as u32);
        }
        if counted != frames {
            return Err(format!(
                "the audio track has {counted} samples, expected {frames}"
            ));
        }

        let segment = (samples as f64 / f64::from(rate) * f64::from(movie_scale)).round();
        if segment > f64::from(u32::MAX) || delay > i32::MAX as usize {
            return Err("edit list values overflow 32 bits".into());
        }
        let media_time = delay as f64;
        let mut edts = Vec::with_capacity(36);
        edts.extend_from_slice(&36u32.to_be_bytes());
        edts.extend_from_slice(b"edts");
        edts.extend_from_slice(&28u32.to_be_bytes());
        edts.extend_from_slice(b"elst");
        edts.extend_from_slice(&0u32.to_be_bytes()); // version 0, no flags
        edts.extend_from_slice(&1u32.to_be_bytes()); // one entry
        edts.extend_from_slice(&(segment as u32).to_be_bytes());
        edts.extend_from_slice(&(media_time as u32).to_be_bytes());
        edts.extend_from_slice(&0x0001_0000u32.to_be_bytes()); // rate 1.0
        let grow = edts.len();

        // the media data moves down by `grow` when the moov sits before it
        if moov.start < mdat.start {
            for t in inner(&mp4, moov)?
                .into_iter()
                .filter(|b| &b.kind == b"trak")
            {
                let Some(stbl) = path(&mp4, t, &[b"mdia", b"minf", b"stbl"])? else {
                    continue;
                };
                for table in inner(&mp4, stbl)? {
                    let body = table.start + table.header;
                    let count = be32(&mp4, body + 4)? as usize;
                    match &table.kind {
                        b"stco" => {
                            for i in 0..count {
                                let at = body + 8 + 4 * i;
                                let v = u64::from(be32(&mp4, at)?) + grow as u64;
                                let v = u32::try_from(v).map_err(|_| "chunk offset overflow")?;
                                mp4[at..at + 4].copy_from_slice(&v.to_be_bytes());
                            }
                        }
                        b"co64" => {
                            for i in 0..count {
                                let at = body + 8 + 8 * i;
                                let hi = u64::from(be32(&mp4, at)?);
                                let lo = u64::from(be32(&mp4, at + 4)?);
                                let v = ((hi << 32) | lo) + grow as u64;
                                mp4[at..at + 8].copy_from_slice(&v.to_be_bytes());
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        for parent in [moov, trak] {
            let size = u32::try_from(parent.size + grow).map_err(|_| "box size overflow")?;
            mp4[parent.start..parent.start + 4].copy_from_slice(&size.to_be_bytes());
        }
        let at = tkhd.start + tkhd.size;
        mp4.splice(at..at, edts);
        Ok(mp4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smooth moving pattern (compressible, like real video) `[F, H, W, 3]`.
    fn pattern(frames: usize, height: usize, width: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(frames * height * width * 3);
        for f in 0..frames {
            for y in 0..height {
                for x in 0..width {
                    let t = f as f32 * 0.3;
                    v.push((128.0 + 100.0 * ((x as f32 * 0.1 + t).sin())) as u8);
                    v.push((128.0 + 100.0 * ((y as f32 * 0.13 - t).cos())) as u8);
                    v.push(((x + y + 4 * f) % 256) as u8);
                }
            }
        }
        v
    }

    fn stereo_sine(rate: u32, seconds: f64) -> Audio {
        let n = (rate as f64 * seconds).round() as usize;
        let data: Vec<f32> = (0..2)
            .flat_map(|c| {
                (0..n).map(move |i| {
                    0.4 * (2.0 * std::f32::consts::PI * 330.0 * (c + 1) as f32 * i as f32
                        / rate as f32)
                        .sin()
                })
            })
            .collect();
        Audio {
            waveform: Tensor::from_vec(data, (1, 2, n), &Device::Cpu).unwrap(),
            sampling_rate: rate,
        }
    }

    fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (*x as f64 - *y as f64).abs())
            .sum::<f64>()
            / a.len() as f64
    }

    #[test]
    fn mp4_write_probe_decode() -> Result<()> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clip.mp4");
        let (f, h, w) = (17, 64, 96);
        let src = pattern(f, h, w);
        let frames = Tensor::from_vec(src.clone(), (f, h, w, 3), &Device::Cpu)?;
        let mut writer = Mp4Writer::create(&path, w, h, 24.0, Some(24000))?;
        // in two chunks, as the VAE decoder streams them
        writer.write_frames(&frames.narrow(0, 0, 10)?)?;
        writer.write_frames(&frames.narrow(0, 10, 7)?)?;
        writer.write_audio(&stereo_sine(24000, 0.7))?;
        assert!(!path.exists());
        assert_eq!(writer.finish()?, path);
        assert!(!partial_path(&path).exists());

        let info = probe_mp4(&path)?;
        assert_eq!((info.width, info.height, info.frame_count), (96, 64, 17));
        assert!((info.fps - 24.0).abs() < 1e-6, "{info:?}");
        assert_eq!(info.video_codec, "avc1");
        #[cfg(not(feature = "aac"))]
        {
            assert!(info.audio.is_none());
            let side = crate::media::audio::load_audio(&path.with_extension("wav"), 0.0, None)?;
            assert_eq!((side.channels.len(), side.frames()), (2, 16800));
        }
        #[cfg(feature = "aac")]
        {
            let audio = info.audio.clone().expect("an audio track");
            assert_eq!((audio.sample_rate, audio.channels), (24000, 2));
            let frame = AAC_FRAME_LEN as f64 / 24000.0;
            assert!((audio.duration - 0.7).abs() <= frame, "{info:?}");
            // the AAC stream decodes (symphonia, the audio reader of this crate)
            let decoded = crate::media::audio::load_audio(&path, 0.0, None)?;
            assert_eq!((decoded.channels.len(), decoded.sample_rate), (2, 24000));
            assert!(decoded.duration() >= 0.7 - frame, "{}", decoded.duration());
        }

        let (decoded, fps) = decode_video_frames(&path, None)?;
        assert_eq!(decoded.dims(), &[f, h, w, 3]);
        assert!((fps - 24.0).abs() < 1e-6);
        let got: Vec<u8> = decoded.flatten_all()?.to_vec1()?;
        let mae = mean_abs_diff(&got, &src);
        assert!(mae < 6.0, "mean abs error {mae}");
        let (capped, _) = decode_video_frames(&path, Some(5))?;
        assert_eq!(capped.dims(), &[5, h, w, 3]);
        Ok(())
    }

    #[test]
    fn writer_errors_leave_no_file() -> Result<()> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.mp4");
        for (w, h, fps) in [
            (63, 64, 24.0),
            (64, 0, 24.0),
            (64, 64, 0.0),
            (64, 64, f64::NAN),
        ] {
            assert!(matches!(
                Mp4Writer::create(&p, w, h, fps, None),
                Err(Error::InvalidArgument(_))
            ));
        }
        assert!(Mp4Writer::create(&p, 64, 64, 24.0, Some(12345)).is_err());
        let bad = dir.path().join("no/such/dir/x.mp4");
        assert!(matches!(
            Mp4Writer::create(&bad, 64, 64, 24.0, None),
            Err(Error::Io { .. })
        ));
        assert!(!bad.exists() && !partial_path(&bad).exists());
        // dropped half-way (an error upstream): nothing stays behind
        let mut writer = Mp4Writer::create(&p, 32, 32, 24.0, None)?;
        let frames = Tensor::zeros((2, 32, 32, 3), DType::U8, &Device::Cpu)?;
        writer.write_frames(&frames)?;
        assert!(partial_path(&p).exists());
        // wrong shapes and dtypes are refused
        assert!(writer.write_frames(&frames.narrow(1, 0, 16)?).is_err());
        assert!(writer.write_frames(&frames.to_dtype(DType::F32)?).is_err());
        assert!(writer.write_audio(&stereo_sine(24000, 0.1)).is_err());
        drop(writer);
        assert!(!p.exists() && !partial_path(&p).exists());
        // finishing without frames is an error, and cleans up too
        let writer = Mp4Writer::create(&p, 32, 32, 24.0, None)?;
        assert!(writer.finish().is_err());
        assert!(!p.exists() && !partial_path(&p).exists());
        Ok(())
    }

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

    #[test]
    fn single_frame_round_trip() -> Result<()> {
        let (w, h) = (33, 21);
        let rgb = pattern(1, h, w);
        assert_eq!(encode_single_frame_round_trip(&rgb, w, h, 0.0)?, rgb);
        let crop: Vec<u8> = (0..20)
            .flat_map(|y| rgb[y * w * 3..(y * w + 32) * 3].to_vec())
            .collect();
        let fine = encode_single_frame_round_trip(&rgb, w, h, 20.0)?;
        let coarse = encode_single_frame_round_trip(&rgb, w, h, 45.0)?;
        assert_eq!(fine.len(), 32 * 20 * 3);
        let (e_fine, e_coarse) = (mean_abs_diff(&fine, &crop), mean_abs_diff(&coarse, &crop));
        assert!(e_fine < 4.0 && e_coarse > e_fine, "{e_fine} {e_coarse}");
        assert!(encode_single_frame_round_trip(&rgb, w, h, -1.0).is_err());
        assert!(encode_single_frame_round_trip(&rgb[1..], w, h, 20.0).is_err());
        assert_eq!(crf_to_qp(33.0), 30);
        Ok(())
    }

    #[test]
    fn avcc_conversion() {
        let mut out = Vec::new();
        avcc_to_annexb(&[0, 0, 0, 2, 0x65, 1, 0, 0, 0, 1, 0x41], 4, &mut out).unwrap();
        assert_eq!(out, vec![0, 0, 0, 1, 0x65, 1, 0, 0, 0, 1, 0x41]);
        assert!(is_idr(&out));
        assert!(avcc_to_annexb(&[0, 0, 0, 9, 1], 4, &mut out).is_err());
    }
}

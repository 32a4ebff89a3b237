//! The MP4 writer: RGB frames to H.264 yuv420p (OpenH264), stereo audio to AAC-LC (FDK, cargo
//! feature `fdk-aac`; without it a WAV file beside the video), muxed with muxide and written atomically
//! through a hidden partial file. Stands for `encode_video` / `_write_audio` of
//! `ltx_pipelines/utils/media_io.py`.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use ltx_core::types::Audio;
use muxide::api::{MuxerBuilder, VideoCodec};
use openh264::encoder::Encoder;

use super::audio::partial_path;
use super::h264::{crf_to_qp, encode_frame, h264_encoder, is_idr, DEFAULT_VIDEO_CRF};
use super::media_err;
#[cfg(feature = "fdk-aac")]
use super::{aac, audio::to_i16, mp4_boxes, AAC_FRAME_LEN};
use crate::{Error, Result};

/// Sample rates an AAC `AudioSpecificConfig` can signal by index.
const AAC_RATES: [u32; 12] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000,
];

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

enum AudioSink {
    #[cfg(feature = "fdk-aac")]
    Aac(aac::AacStream),
    #[cfg(not(feature = "fdk-aac"))]
    Wav(Vec<Vec<f32>>),
}

/// Streams RGB frames (and optionally stereo audio) into an MP4: H.264 yuv420p video and AAC-LC
/// audio (or, without the `fdk-aac` feature, a WAV file beside the MP4).
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
            #[cfg(feature = "fdk-aac")]
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
            #[cfg(not(feature = "fdk-aac"))]
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
            #[cfg(feature = "fdk-aac")]
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
            #[cfg(not(feature = "fdk-aac"))]
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
        #[cfg(not(feature = "fdk-aac"))]
        if let Some(AudioSink::Wav(channels)) = self.audio.take() {
            let sidecar = self.path.with_extension("wav");
            tracing::warn!(
                "built without the `fdk-aac` feature: the audio goes to {} beside the video",
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
        #[cfg(feature = "fdk-aac")]
        let mut edit = None;
        #[cfg(feature = "fdk-aac")]
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
        #[cfg(feature = "fdk-aac")]
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::test_support::{mean_abs_diff, pattern, sine};
    use crate::media::{decode_video_frames, probe_mp4};

    fn stereo_sine(rate: u32, seconds: f64) -> Audio {
        sine(rate, seconds, 2, 330.0, 0.4)
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
        #[cfg(not(feature = "fdk-aac"))]
        {
            assert!(info.audio.is_none());
            let side = crate::media::audio::load_audio(&path.with_extension("wav"), 0.0, None)?;
            assert_eq!((side.channels.len(), side.frames()), (2, 16800));
        }
        #[cfg(feature = "fdk-aac")]
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
}

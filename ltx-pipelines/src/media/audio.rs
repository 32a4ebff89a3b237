//! Audio files in and out (the audio half of `ltx_pipelines/utils/media_io.py`), without ffmpeg:
//! decoding with symphonia (WAV, FLAC, MP3, AAC/M4A, ALAC, Ogg Vorbis; also the audio track of an
//! MP4/MOV video), writing 16-bit WAV with hound.
//!
//! `decode_audio_file` returns the waveform at the file's own rate, like the reference; the audio
//! processor resamples to the model's rate when it builds the mel spectrogram.

use std::fs::File;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use ltx_core::types::Audio;
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use super::media_err;
use crate::{Error, Result};

/// Decoded audio: planar f32 samples in [-1, 1] at the file's rate.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodedAudio {
    /// One `Vec` per channel, all the same length.
    pub channels: Vec<Vec<f32>>,
    pub sample_rate: u32,
}

impl DecodedAudio {
    pub fn frames(&self) -> usize {
        self.channels.first().map_or(0, Vec::len)
    }

    /// Duration in seconds.
    pub fn duration(&self) -> f64 {
        self.frames() as f64 / self.sample_rate as f64
    }

    /// The model takes stereo: mono is duplicated to both channels, and of more than two channels
    /// the first two (front left / right in the standard layouts) are kept.
    pub fn into_stereo(mut self) -> Self {
        match self.channels.len() {
            1 => {
                let c = self.channels[0].clone();
                self.channels.push(c);
            }
            n if n > 2 => {
                tracing::warn!("audio has {n} channels: keeping the first two");
                self.channels.truncate(2);
            }
            _ => {}
        }
        self
    }

    /// `[1, channels, samples]` f32 on `device`.
    pub fn to_audio(&self, device: &Device) -> Result<Audio> {
        let (c, n) = (self.channels.len(), self.frames());
        let flat: Vec<f32> = self.channels.concat();
        Ok(Audio {
            waveform: Tensor::from_vec(flat, (1, c, n), device)?,
            sampling_rate: self.sample_rate,
        })
    }
}

/// Decodes the first audio track of `path` (an audio file, or a video with an audio track).
/// `start_time` / `max_duration` (seconds) select a window as the reference's
/// `decode_audio_from_file` does. `Ok(None)` when the file has no audio track (a silent video);
/// an unreadable, truncated or empty file, or an unsupported codec, is an error.
pub fn decode_audio_file(
    path: &Path,
    start_time: f64,
    max_duration: Option<f64>,
) -> Result<Option<DecodedAudio>> {
    let start_ok = start_time.is_finite() && start_time >= 0.0;
    let duration_ok = max_duration.is_none_or(|d| d.is_finite() && d > 0.0);
    if !start_ok || !duration_ok {
        return Err(Error::InvalidArgument(format!(
            "audio window start {start_time} s, duration {max_duration:?} s: the start must be >= 0 \
             and the duration > 0"
        )));
    }
    let file = File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            mss,
            // trim encoder delay / padding (LAME tags, edit lists) as ffmpeg does
            &FormatOptions {
                enable_gapless: true,
                ..Default::default()
            },
            &MetadataOptions::default(),
        )
        .map_err(|e| media_err(path, format!("not a readable audio/video container ({e})")))?;
    let mut format = probed.format;
    let Some(track) = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL && t.codec_params.sample_rate.is_some())
    else {
        return Ok(None);
    };
    let track_id = track.id;
    let params = track.codec_params.clone();
    let sample_rate = params.sample_rate.unwrap_or(0);
    if sample_rate == 0 {
        return Err(media_err(path, "the audio track has a sample rate of 0"));
    }
    let mut decoder = symphonia::default::get_codecs()
        .make(&params, &DecoderOptions::default())
        .map_err(|e| {
            media_err(
                path,
                format!(
                    "unsupported audio codec {:?} ({e}); supported: PCM WAV, FLAC, MP3, AAC, ALAC, Vorbis",
                    symphonia::default::get_codecs()
                        .get_codec(params.codec)
                        .map_or("unknown", |d| d.short_name)
                ),
            )
        })?;

    let mut channels: Vec<Vec<f32>> = Vec::new();
    let mut buf: Option<SampleBuffer<f32>> = None;
    let mut hit_eof = false;
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                hit_eof = true;
                break;
            }
            Err(SymphoniaError::ResetRequired) => break,
            Err(e) => {
                return Err(media_err(
                    path,
                    format!("cannot read the audio stream ({e})"),
                ))
            }
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            Err(SymphoniaError::DecodeError(e)) => {
                tracing::warn!("{}: skipping a corrupt audio packet ({e})", path.display());
                continue;
            }
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                hit_eof = true;
                break;
            }
            Err(e) => return Err(media_err(path, format!("cannot decode the audio ({e})"))),
        };
        let spec = *decoded.spec();
        let n_ch = spec.channels.count();
        if channels.is_empty() {
            channels = vec![Vec::new(); n_ch];
        } else if channels.len() != n_ch {
            return Err(media_err(path, "the channel count changes mid-stream"));
        }
        let frames = decoded.frames();
        if frames == 0 {
            continue;
        }
        let sb = match &mut buf {
            Some(b) if b.capacity() >= decoded.capacity() => b,
            _ => buf.insert(SampleBuffer::new(decoded.capacity() as u64, spec)),
        };
        sb.copy_planar_ref(decoded);
        let samples = sb.samples();
        for (c, ch) in channels.iter_mut().enumerate() {
            ch.extend_from_slice(&samples[c * frames..(c + 1) * frames]);
        }
    }
    let got = channels.first().map_or(0, Vec::len) as u64;
    if let Some(expected) = params.n_frames {
        // containers that state their length (WAV, FLAC, MP4) reveal a cut-off file
        let trimmed = u64::from(params.delay.unwrap_or(0)) + u64::from(params.padding.unwrap_or(0));
        if hit_eof && got + trimmed < expected {
            return Err(media_err(
                path,
                format!("truncated: {got} of {expected} audio frames could be decoded"),
            ));
        }
    }
    if got == 0 {
        return Err(media_err(path, "the audio track holds no samples"));
    }
    let mut audio = DecodedAudio {
        channels,
        sample_rate,
    };
    // the requested window
    let skip = (start_time * sample_rate as f64).round() as usize;
    if skip >= audio.frames() {
        return Err(media_err(
            path,
            format!(
                "start time {start_time} s is past the end of the audio ({:.3} s)",
                audio.duration()
            ),
        ));
    }
    let take = max_duration.map_or(usize::MAX, |d| (d * sample_rate as f64).round() as usize);
    for ch in &mut audio.channels {
        ch.drain(..skip);
        ch.truncate(take);
    }
    Ok(Some(audio))
}

/// Like [`decode_audio_file`], for inputs that must have audio: a file without an audio track is
/// an error.
pub fn load_audio(path: &Path, start_time: f64, max_duration: Option<f64>) -> Result<DecodedAudio> {
    decode_audio_file(path, start_time, max_duration)?
        .ok_or_else(|| media_err(path, "the file has no audio track"))
}

/// A sibling path for writing before the final rename, so a failure never leaves a half-written
/// file under the requested name.
pub fn partial_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.partial"))
}

/// The reference's int16 conversion: clip to [-1, 1], scale by 32767, truncate.
pub(super) fn to_i16(x: f32) -> i16 {
    (x.clamp(-1.0, 1.0) * 32767.0) as i16
}

/// Writes `[C, N]` or `[1, C, N]` audio in [-1, 1] as 16-bit PCM WAV (samples clipped and scaled by
/// 32767, like the reference's int16 conversion), atomically.
pub fn write_wav(path: &Path, audio: &Audio) -> Result<()> {
    let wav = audio.waveform.to_dtype(candle_core::DType::F32)?;
    let wav = match wav.rank() {
        3 if wav.dim(0)? == 1 => wav.squeeze(0)?,
        2 => wav,
        _ => {
            return Err(Error::InvalidArgument(format!(
                "write_wav takes [C, N] or [1, C, N] audio, got {:?}",
                wav.dims()
            )))
        }
    };
    let (c, n) = wav.dims2()?;
    if c == 0 || c > u16::MAX as usize || audio.sampling_rate == 0 {
        return Err(Error::InvalidArgument(format!(
            "write_wav: {c} channels at {} Hz",
            audio.sampling_rate
        )));
    }
    let data: Vec<Vec<f32>> = wav.to_vec2()?;
    let tmp = partial_path(path);
    let io_err = |source: std::io::Error| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let hound_err = |e: hound::Error| match e {
        hound::Error::IoError(source) => io_err(source),
        other => media_err(path, other.to_string()),
    };
    let spec = hound::WavSpec {
        channels: c as u16,
        sample_rate: audio.sampling_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let result = (|| -> Result<()> {
        let mut w = hound::WavWriter::create(&tmp, spec).map_err(hound_err)?;
        for i in 0..n {
            for ch in &data {
                w.write_sample(to_i16(ch[i])).map_err(hound_err)?;
            }
        }
        w.finalize().map_err(hound_err)?;
        std::fs::rename(&tmp, path).map_err(io_err)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, seconds: f64, channels: usize) -> Audio {
        crate::media::test_support::sine(rate, seconds, channels, 440.0, 0.5)
    }

    #[test]
    fn wav_round_trip_window_and_stereo() -> Result<()> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.wav");
        write_wav(&p, &sine(22050, 1.0, 2))?;
        assert!(!partial_path(&p).exists());
        let a = load_audio(&p, 0.0, None)?;
        assert_eq!(
            (a.channels.len(), a.frames(), a.sample_rate),
            (2, 22050, 22050)
        );
        let src: Vec<f32> = sine(22050, 1.0, 2).waveform.squeeze(0)?.get(1)?.to_vec1()?;
        for (x, y) in src.iter().zip(&a.channels[1]) {
            assert!((x - y).abs() < 1.0 / 16000.0, "{x} vs {y}");
        }
        let w = load_audio(&p, 0.25, Some(0.5))?;
        assert_eq!(w.frames(), 11025);
        // 0.25 s x 22050 Hz = 5512.5 samples, rounded half away from zero
        assert_eq!(w.channels[0][..10], a.channels[0][5513..5523]);

        let m = dir.path().join("m.wav");
        write_wav(&m, &sine(8000, 0.1, 1))?;
        let mono = load_audio(&m, 0.0, None)?.into_stereo();
        assert_eq!(mono.channels.len(), 2);
        assert_eq!(mono.channels[0], mono.channels[1]);
        let t = mono.to_audio(&Device::Cpu)?;
        assert_eq!(t.waveform.dims(), &[1, 2, 800]);
        Ok(())
    }

    #[test]
    fn bad_files_are_typed_errors() -> Result<()> {
        let dir = tempfile::tempdir().unwrap();
        // unreadable
        let missing = dir.path().join("nope.wav");
        assert!(matches!(
            load_audio(&missing, 0.0, None),
            Err(Error::Io { .. })
        ));
        // not audio at all
        let junk = dir.path().join("junk.mp3");
        std::fs::write(&junk, b"this is not an audio file at all, just text").unwrap();
        assert!(matches!(
            load_audio(&junk, 0.0, None),
            Err(Error::Media { .. })
        ));
        // truncated: a WAV whose header promises 1 s, cut to half
        let p = dir.path().join("t.wav");
        write_wav(&p, &sine(16000, 1.0, 2))?;
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        let e = load_audio(&p, 0.0, None).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        // zero-length
        let z = dir.path().join("z.wav");
        write_wav(
            &z,
            &Audio {
                waveform: Tensor::zeros((1, 2, 0), candle_core::DType::F32, &Device::Cpu)?,
                sampling_rate: 16000,
            },
        )?;
        let e = load_audio(&z, 0.0, None).unwrap_err();
        assert!(e.to_string().contains("no samples"), "{e}");
        // a window past the end, a bad window
        let ok = dir.path().join("ok.wav");
        write_wav(&ok, &sine(16000, 0.5, 2))?;
        assert!(load_audio(&ok, 2.0, None).is_err());
        assert!(matches!(
            load_audio(&ok, -1.0, None),
            Err(Error::InvalidArgument(_))
        ));
        // an unwritable output
        let e = write_wav(&dir.path().join("no/such/dir/x.wav"), &sine(16000, 0.1, 2));
        assert!(matches!(e, Err(Error::Io { .. })));
        Ok(())
    }
}

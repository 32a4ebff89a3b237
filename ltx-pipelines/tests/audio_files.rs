//! Decoding real encoded audio files (tests/media/, written by tests/reference/make_audio_samples.py
//! with ffmpeg's encoders): FLAC, MP3 and AAC in M4A, stereo and mono, and an MP4 written by our own
//! muxer, each checked for rate, channels, duration and the tone it carries.

use std::path::PathBuf;

use ltx_pipelines::media::audio::{load_audio, DecodedAudio};

fn media(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/media")
        .join(name)
}

/// Correlation of a channel with a sine of `freq` Hz (phase-free: sin and cos parts), in [0, 1].
fn tone_match(x: &[f32], rate: u32, freq: f64) -> f64 {
    let (mut s, mut c, mut e) = (0f64, 0f64, 0f64);
    for (i, &v) in x.iter().enumerate() {
        let ph = 2.0 * std::f64::consts::PI * freq * i as f64 / rate as f64;
        s += v as f64 * ph.sin();
        c += v as f64 * ph.cos();
        e += (v as f64).powi(2);
    }
    let n = x.len() as f64;
    ((s * s + c * c) / (n / 2.0) / e.max(1e-12)).sqrt()
}

/// `extra`: how much longer the decode may be. AAC streams carry the encoder's priming and padding
/// (up to a few 1024-sample frames); like the reference's PyAV decode, they are not trimmed.
fn check(a: &DecodedAudio, rate: u32, channels: usize, seconds: f64, extra: f64, freqs: &[f64]) {
    assert_eq!(a.sample_rate, rate);
    assert_eq!(a.channels.len(), channels);
    let d = a.duration();
    assert!(
        d > seconds - 0.002 && d < seconds + extra + 0.002,
        "duration {d} vs {seconds} (+{extra})"
    );
    for (ch, f) in a.channels.iter().zip(freqs) {
        let peak = ch.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!((0.35..0.7).contains(&peak), "peak {peak}");
        // codec edges (priming, the tone's hard start / stop) cost some correlation
        let m = tone_match(ch, rate, *f);
        assert!(m > 0.8, "channel does not carry {f} Hz: {m}");
        let other = if *f == 440.0 { 660.0 } else { 440.0 };
        let x = tone_match(ch, rate, other);
        assert!(x < 0.3, "channel also carries {other} Hz: {x}");
    }
}

#[test]
fn decodes_flac_mp3_and_aac() {
    let aac_slack = 3.0 * 1024.0 / 22050.0;
    for (name, extra) in [
        ("tone_stereo_22k.flac", 0.0),
        ("tone_stereo_22k.mp3", 0.0),
        ("tone_stereo_22k.m4a", aac_slack),
    ] {
        let a = load_audio(&media(name), 0.0, None).unwrap_or_else(|e| panic!("{name}: {e}"));
        check(&a, 22050, 2, 0.25, extra, &[440.0, 660.0]);
    }
    let mono = load_audio(&media("tone_mono_8k.mp3"), 0.0, None).unwrap();
    check(&mono, 8000, 1, 0.25, 0.0, &[440.0]);
    let stereo = mono.into_stereo();
    assert_eq!(stereo.channels[0], stereo.channels[1]);
}

#[test]
fn decodes_the_audio_track_of_our_own_mp4() {
    use candle_core::{Device, Tensor};
    use ltx_core::types::Audio;
    use ltx_pipelines::media::video::Mp4Writer;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.mp4");
    let rate = 24000u32;
    let n = (rate as f64 * 0.5) as usize;
    let wave: Vec<f32> = (0..2)
        .flat_map(|c| {
            let f = [440.0f32, 660.0][c];
            (0..n)
                .map(move |i| 0.5 * (2.0 * std::f32::consts::PI * f * i as f32 / rate as f32).sin())
        })
        .collect();
    let audio = Audio {
        waveform: Tensor::from_vec(wave, (1, 2, n), &Device::Cpu).unwrap(),
        sampling_rate: rate,
    };
    let mut w = Mp4Writer::create(&path, 64, 64, 24.0, Some(rate)).unwrap();
    let frames = Tensor::zeros((12, 64, 64, 3), candle_core::DType::U8, &Device::Cpu).unwrap();
    w.write_frames(&frames).unwrap();
    w.write_audio(&audio).unwrap();
    w.finish().unwrap();
    let a = load_audio(&path, 0.0, None).unwrap();
    check(
        &a,
        rate,
        2,
        0.5,
        3.0 * 1024.0 / rate as f64,
        &[440.0, 660.0],
    );
}

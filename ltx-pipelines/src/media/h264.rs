//! H.264 with OpenH264 (yuv420p, BT.601 limited range like swscale's default): the encoder setup
//! the MP4 writer uses, the x264 CRF → quantiser mapping, the single-frame round trip used for
//! conditioning images, and NAL unit helpers (`avcC` → Annex-B, keyframe detection). Stands for
//! the codec side of `ltx_pipelines/utils/media_io.py`: `encode_video`'s libx264 stream and
//! `preprocess` (`encode_single_frame` + `decode_single_frame`).
//!
//! The reference encodes with libx264 at its default CRF 23. OpenH264 has no CRF, so quality is
//! set through the quantiser instead (see [`crf_to_qp`]).

use std::path::Path;

use openh264::decoder::Decoder;
use openh264::encoder::{
    BitRate, Encoder, EncoderConfig, FrameRate, IntraFramePeriod, QpRange, RateControlMode,
};
use openh264::formats::{RgbSliceU8, YUVBuffer};
use openh264::OpenH264API;

use super::media_err;
use crate::{Error, Result};

/// libx264's default CRF, which the reference's `encode_video` uses.
pub const DEFAULT_VIDEO_CRF: f64 = 23.0;

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
    media_err(Path::new("<in-memory H.264>"), reason)
}

/// An OpenH264 encoder whose quantiser stays in `qp_min..=qp_max` and which never drops frames.
pub(super) fn h264_encoder(
    fps: f64,
    bits_per_second: u32,
    qp_min: u8,
    qp_max: u8,
) -> Result<Encoder> {
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
pub(super) fn is_idr(annexb: &[u8]) -> bool {
    nal_types(annexb).any(|t| t == 5)
}

/// Encodes `[H, W, 3]` u8 RGB (already even-sized) as one YUV 4:2:0 H.264 frame.
pub(super) fn encode_frame(
    encoder: &mut Encoder,
    rgb: &[u8],
    width: usize,
    height: usize,
) -> Result<Vec<u8>> {
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

/// Rewrites length-prefixed NAL units (MP4 `avc1` samples) as start-code-prefixed Annex-B,
/// appending to `out`.
pub(super) fn avcc_to_annexb(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::test_support::{mean_abs_diff, pattern};

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

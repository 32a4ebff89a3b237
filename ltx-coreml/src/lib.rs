//! Core ML (`.mlpackage`, ML Program) export of the LTX-2 video VAE encoder/decoder and the
//! latent upsamplers, written in Rust only (no Python at export time).
//!
//! - [`proto`]: the Core ML protobuf subset; [`blob`]: the MIL weight blob; [`mil`]: a typed graph
//!   builder with shape inference; [`package`]: package layout, manifest and [`PackageMeta`].
//! - [`lower`]: the Candle modules rewritten as rank-4 MIL graphs (time-major `[F, C, H, W]`).
//! - [`export()`]: the driver behind `ltx-coreml export`; [`candle_forward`] runs the Candle twin.
//! - [`interp`]: a CPU reference interpreter for the exported op subset, used by the tests.
//!
//! See `docs/coreml.md` for the op forms and their reasons.

pub mod backend;
pub mod blob;
pub mod check;
pub mod error;
pub mod export;
pub mod interp;
pub mod lower;
pub mod mil;
pub mod package;
pub mod proto;

pub use backend::{CoreMlVideoDecoder, InterpretedVideoDecoder};
pub use check::{check_fixture, FixtureCheck};
pub use error::{CoreMlError, Result};
pub use export::{
    candle_forward, export, from_time_major, to_time_major, CandleTwin, ExportOptions,
};
pub use interp::Interpreter;
pub use package::PackageMeta;

use std::str::FromStr;

/// The exportable components.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    VideoDecoder,
    VideoEncoder,
    LatentUpsampler,
}

impl Component {
    pub fn name(self) -> &'static str {
        match self {
            Self::VideoDecoder => "video-decoder",
            Self::VideoEncoder => "video-encoder",
            Self::LatentUpsampler => "latent-upsampler",
        }
    }
}

impl FromStr for Component {
    type Err = CoreMlError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "video-decoder" => Ok(Self::VideoDecoder),
            "video-encoder" => Ok(Self::VideoEncoder),
            "latent-upsampler" => Ok(Self::LatentUpsampler),
            other => Err(CoreMlError::UnsupportedComponent(other.to_string())),
        }
    }
}

/// Weight and compute precision of the graph (inputs and outputs are always fp32).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    Fp16,
    Fp32,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Self::Fp16 => "fp16",
            Self::Fp32 => "fp32",
        }
    }
}

impl FromStr for Precision {
    type Err = CoreMlError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "fp16" => Ok(Self::Fp16),
            "fp32" => Ok(Self::Fp32),
            other => Err(CoreMlError::UnsupportedModel(format!(
                "precision `{other}` (expected fp16 or fp32)"
            ))),
        }
    }
}

/// How a 3-D convolution becomes rank-4 (frames are the batch in both forms).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvForm {
    /// The `kt` time-shifted frame windows concatenated on channels, one conv2d with
    /// `kt·Cin` input channels (default: one ANE convolution per layer, taps summed inside it).
    ChannelFold,
    /// One conv2d per temporal tap over the shifted windows, summed with `add`.
    PerTap,
}

impl ConvForm {
    pub fn name(self) -> &'static str {
        match self {
            Self::ChannelFold => "channel-fold",
            Self::PerTap => "per-tap",
        }
    }
}

impl FromStr for ConvForm {
    type Err = CoreMlError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "channel-fold" => Ok(Self::ChannelFold),
            "per-tap" => Ok(Self::PerTap),
            other => Err(CoreMlError::UnsupportedModel(format!(
                "conv form `{other}` (expected channel-fold or per-tap)"
            ))),
        }
    }
}

/// The fixed shape a package is exported for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShapeSpec {
    /// Latent `(F', H', W')`.
    Latent([usize; 3]),
    /// Pixel-space `(frames, height, width)`: frames `1 + 8k`, height and width multiples of 32
    /// (the VAE's factors).
    Pixels([usize; 3]),
}

/// The Core ML runtime (macOS): its layout helpers and compute-unit parsing build everywhere, the
/// `objc2` parts on Apple targets only.
pub mod apple;

//! `media_resize` fixtures: the reference's image resizing (`resize_and_center_crop` on an image
//! and on a frame stack, `resize_aspect_ratio_preserving`) from `ltx_pipelines/utils/media_io.py`.

use std::sync::Arc;

use candle_core::Device;
use ltx_core::loader::StateDict;

use super::{Fixture, Outputs};
use crate::Result;
use ltx_pipelines::media::{resize_and_center_crop, resize_aspect_ratio_preserving};

pub(super) fn run(fx: &Fixture, inputs: &Arc<StateDict>, device: &Device) -> Result<Outputs> {
    let height = fx.call_usize("height")?;
    let width = fx.call_usize("width")?;
    let long_side = fx.call_usize("long_side")?;
    let image = fx.input(inputs, "image", device)?;
    let frames = fx.input(inputs, "frames", device)?;
    Ok(vec![
        (
            "center_crop".into(),
            resize_and_center_crop(&image, height, width)?,
        ),
        (
            "center_crop_frames".into(),
            resize_and_center_crop(&frames, height, width)?,
        ),
        (
            "aspect".into(),
            resize_aspect_ratio_preserving(&image, long_side)?,
        ),
    ])
}

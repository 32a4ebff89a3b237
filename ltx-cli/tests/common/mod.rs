//! What the CLI tests share: the tiny model's flags and the input files they write (a LoRA, a
//! PNG). Each test crate uses a part of it.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// The built-in tiny model, in the test cache.
pub fn tiny_model() -> ltx_pipelines::tiny::TinyModel {
    let cache = std::env::temp_dir().join("ltx-rs-test-cache");
    ltx_pipelines::tiny::ensure_tiny_model(&cache).unwrap()
}

/// `c` with the tiny model's `--checkpoint-path`, `--gemma-root` and `--spatial-upsampler-path`.
pub fn tiny_model_flags<'c>(
    c: &'c mut Command,
    tiny: &ltx_pipelines::tiny::TinyModel,
) -> &'c mut Command {
    c.arg("--checkpoint-path")
        .arg(&tiny.checkpoint)
        .arg("--gemma-root")
        .arg(&tiny.gemma_root)
        .arg("--spatial-upsampler-path")
        .arg(&tiny.spatial_upsampler)
}

/// A rank-2 LoRA on `diffusion_model.<module>` (`out_f` x `in_f`), in the stored layout of the
/// released LoRAs.
pub fn write_lora(path: &Path, module: &str, out_f: usize, in_f: usize) {
    use candle_core::{DType, Device, Tensor};
    let dev = Device::Cpu;
    let a = Tensor::ones((2, in_f), DType::BF16, &dev).unwrap();
    let b = (Tensor::ones((out_f, 2), DType::F32, &dev).unwrap() * 0.01)
        .unwrap()
        .to_dtype(DType::BF16)
        .unwrap();
    let tensors = std::collections::HashMap::from([
        (format!("diffusion_model.{module}.lora_A.weight"), a),
        (format!("diffusion_model.{module}.lora_B.weight"), b),
    ]);
    ltx_core::loader::synthetic::save_safetensors(path, &tensors, Default::default()).unwrap();
}

/// A deterministic `w` x `h` RGB pattern.
pub fn write_png(path: &Path, w: u32, h: u32, seed: u32) {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            ((x * 7 + seed * 31) % 256) as u8,
            ((y * 5 + seed * 17) % 256) as u8,
            (((x + y) * 3) % 256) as u8,
        ])
    });
    img.save(path).unwrap();
}

//! The pipelines decoding through an exported decoder package (`--vae-backend coreml`'s path),
//! checked on any platform with the package run by the reference interpreter: the built-in tiny
//! model's distilled pipeline, once with its Candle decoder and once with the package, must give
//! the same frames.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use ltx_coreml::{
    export, Component, ConvForm, ExportOptions, InterpretedVideoDecoder, Precision, ShapeSpec,
};
use ltx_pipelines::distilled::{DistilledPipeline, GenerationRequest, RunIo};
use ltx_pipelines::utils::model_ledger::{ModelLedger, VideoDecoderBackend};

fn frames(ledger: ModelLedger, req: &GenerationRequest) -> Tensor {
    let mut chunks = Vec::new();
    let io = RunIo {
        progress: &mut |_| {},
        sink: &mut |c| {
            chunks.push(c);
            Ok(())
        },
    };
    DistilledPipeline::new(ledger).run(req, io).unwrap();
    Tensor::cat(&chunks, 0).unwrap()
}

#[test]
fn distilled_pipeline_decodes_through_an_exported_package() {
    let cache = std::env::temp_dir().join("ltx-rs-test-cache");
    let tiny = ltx_pipelines::tiny::ensure_tiny_model(&cache).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (frames_n, height, width) = (9, 128, 192);
    let pkg = dir.path().join("dec.mlpackage");
    export(&ExportOptions {
        component: Component::VideoDecoder,
        checkpoint: tiny.checkpoint.clone(),
        upsampler: None,
        shape: ShapeSpec::Pixels([frames_n, height, width]),
        precision: Precision::Fp32,
        conv_form: ConvForm::ChannelFold,
        out: pkg.clone(),
        force: false,
    })
    .unwrap();
    let ledger = ModelLedger::new(
        DType::F32,
        Device::Cpu,
        tiny.checkpoint,
        Some(tiny.gemma_root),
        Some(tiny.spatial_upsampler),
        Vec::new(),
    )
    .unwrap();
    let req = GenerationRequest {
        prompt: "a red kite over the sea".into(),
        seed: 7,
        noise: Default::default(),
        height,
        width,
        num_frames: frames_n,
        frame_rate: 24.0,
        images: Vec::new(),
        tiling: None,
        enhance_prompt: None,
        auto_duration: None,
    };
    let candle = frames(ledger.clone(), &req);
    let mut with_package = ledger;
    with_package.video_decoder_backend = Some(VideoDecoderBackend(Arc::new(
        InterpretedVideoDecoder::new(&pkg).unwrap(),
    )));
    let package = frames(with_package, &req);
    assert_eq!(candle.dims(), &[frames_n, height, width, 3]);
    assert_eq!(package.dims(), candle.dims());
    // f32 frames in [0, 1]: the two differ by summation order only
    let diff = (candle.to_dtype(DType::F32).unwrap() - package.to_dtype(DType::F32).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff <= 1e-4, "frames differ by up to {diff}");
}

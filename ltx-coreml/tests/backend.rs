//! The exported decoder as the pipelines' video decoder: package checks, the shape check made
//! before any work, and (off macOS) a typed error instead of a decode.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use ltx_core::model::video_vae::LatentVideoDecoder;
use ltx_coreml::apple::ComputeUnits;
use ltx_coreml::{
    export, Component, ConvForm, CoreMlVideoDecoder, ExportOptions, Precision, ShapeSpec,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(format!("{name}.safetensors"))
}

fn export_to(component: Component, fixture_name: &str, latent: [usize; 3], out: &Path) {
    export(&ExportOptions {
        component,
        checkpoint: fixture(fixture_name),
        upsampler: None,
        shape: ShapeSpec::Latent(latent),
        precision: Precision::Fp16,
        conv_form: ConvForm::ChannelFold,
        out: out.to_path_buf(),
        force: false,
    })
    .unwrap();
}

#[test]
fn decoder_package_as_pipeline_backend() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("dec.mlpackage");
    let latent = candle_core::safetensors::load(fixture("video_decoder_ltx2"), &Device::Cpu)
        .unwrap()["input.latent"]
        .clone();
    let (_, c, f, h, w) = latent.dims5().unwrap();
    export_to(
        Component::VideoDecoder,
        "video_decoder_ltx2",
        [f, h, w],
        &pkg,
    );
    let dec = CoreMlVideoDecoder::new(&pkg, ComputeUnits::All, dir.path()).unwrap();
    assert_eq!(dec.latent_shape(), Some([c, f, h, w]));
    dec.check_latent_shape([c, f, h, w]).unwrap();
    let err = dec.check_latent_shape([c, f + 1, h, w]).unwrap_err();
    assert!(err.to_string().contains("export it for this size"), "{err}");
    let wrong = Tensor::zeros((1, c, f, h, w + 1), DType::F32, &Device::Cpu).unwrap();
    assert!(dec.decode(&wrong).is_err());
    if !cfg!(target_vendor = "apple") {
        let err = dec.decode(&latent).unwrap_err();
        assert!(err.to_string().contains("macOS"), "{err}");
    }

    // a package of another component is refused
    let up = dir.path().join("up.mlpackage");
    let l = candle_core::safetensors::load(fixture("latent_upsampler_spatial"), &Device::Cpu)
        .unwrap()["input.latent"]
        .dims()
        .to_vec();
    export_to(
        Component::LatentUpsampler,
        "latent_upsampler_spatial",
        [l[2], l[3], l[4]],
        &up,
    );
    let err = CoreMlVideoDecoder::new(&up, ComputeUnits::All, dir.path()).unwrap_err();
    assert!(err.to_string().contains("not a video-decoder"), "{err}");
}

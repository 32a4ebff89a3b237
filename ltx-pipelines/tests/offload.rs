//! Streamed transformer blocks (`--offload cpu|disk`) give the resident model's output bit for
//! bit, LoRAs included, and a budget that cannot hold the model is refused before any weight is
//! read.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use ltx_core::model::transformer::Modality;
use ltx_pipelines::utils::model_ledger::{LoraSpec, ModelLedger};
use ltx_pipelines::utils::offload::{ComponentSize, MemoryPolicy, Offload};
use ltx_pipelines::Error;

fn ledger(dir: &std::path::Path, loras: Vec<LoraSpec>, memory: MemoryPolicy) -> ModelLedger {
    let tiny = ltx_pipelines::tiny::ensure_tiny_model(&dir.join("tiny")).unwrap();
    let mut l =
        ModelLedger::new(DType::F32, Device::Cpu, tiny.checkpoint, None, None, loras).unwrap();
    l.memory = memory;
    l
}

fn modality(tokens: usize, channels: usize, axes: usize, seed: u64) -> Modality {
    let dev = Device::Cpu;
    let r = |shape: &[usize], k: u64| {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|i| (((i as u64 + 1) * (seed * 31 + k * 7 + 3)) % 17) as f32 / 8.0 - 1.0)
            .collect();
        Tensor::from_vec(v, shape, &dev).unwrap()
    };
    Modality {
        latent: r(&[1, tokens, channels], 1),
        sigma: Tensor::new(&[0.7f32], &dev).unwrap(),
        timesteps: Tensor::full(0.7f32, (1, tokens, 1), &dev).unwrap(),
        positions: r(&[1, axes, tokens, 2], 2),
        context: r(&[1, 5, 24], 3),
        enabled: true,
        context_mask: None,
        attention_mask: None,
        keyframes_mask: None,
        context_key: None,
    }
}

fn write_lora(path: &std::path::Path) {
    let dev = Device::Cpu;
    let mut tensors = HashMap::new();
    for (module, (out_f, in_f)) in [
        ("transformer_blocks.1.attn1.to_q", (32, 32)),
        ("transformer_blocks.0.ff.net.2", (32, 128)),
        ("patchify_proj", (32, 128)),
    ] {
        let a = (Tensor::ones((2, in_f), DType::F32, &dev).unwrap() * 0.5).unwrap();
        let b = (Tensor::ones((out_f, 2), DType::F32, &dev).unwrap() * 0.01).unwrap();
        tensors.insert(
            format!("diffusion_model.{module}.lora_A.weight"),
            a.to_dtype(DType::BF16).unwrap(),
        );
        tensors.insert(
            format!("diffusion_model.{module}.lora_B.weight"),
            b.to_dtype(DType::BF16).unwrap(),
        );
    }
    ltx_core::loader::synthetic::save_safetensors(path, &tensors, Default::default()).unwrap();
}

/// The smallest budget that streams every block: what is outside the blocks, the block in use
/// and the next one as stored (with `Offload::Cpu`, every block's stored copy too).
fn streaming_floor(size: &ComponentSize, offload: Offload) -> u64 {
    let stored: u64 = size.blocks_stored.iter().sum();
    size.resident
        + size.blocks.iter().max().unwrap()
        + size.blocks_stored.iter().max().unwrap()
        + if offload == Offload::Cpu { stored } else { 0 }
}

/// [`write_lora`] into `dir`, at strength 0.8.
fn lora_at_0_8(dir: &std::path::Path) -> Vec<LoraSpec> {
    let path = dir.join("lora.safetensors");
    write_lora(&path);
    vec![LoraSpec {
        path,
        strength: 0.8,
    }]
}

fn forward(l: &ModelLedger) -> Vec<Vec<f32>> {
    let model = l.transformer().unwrap();
    let (video, audio) = (modality(6, 128, 3, 1), modality(4, 128, 1, 2));
    let (v, a) = model.forward(Some(&video), Some(&audio), None).unwrap();
    [v.unwrap(), a.unwrap()]
        .iter()
        .map(|t| t.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .collect()
}

#[test]
fn streamed_blocks_equal_resident_ones_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let loras = lora_at_0_8(dir.path());
    let policy = |offload, max_memory| MemoryPolicy {
        offload,
        max_memory,
        ..Default::default()
    };
    let resident = forward(&ledger(dir.path(), loras.clone(), MemoryPolicy::default()));
    // the same output with the LoRA, without it it differs (the LoRA is really fused)
    assert_ne!(
        forward(&ledger(dir.path(), vec![], MemoryPolicy::default())),
        resident
    );
    let l = ledger(
        dir.path(),
        loras.clone(),
        policy(Offload::Disk, Some(1 << 30)),
    );
    assert_eq!(
        l.check_memory().unwrap(),
        Some(2),
        "a roomy budget keeps both blocks"
    );
    assert_eq!(forward(&l), resident);
    // every block streamed: the budget holds what is outside the blocks and the block in use and the next one as stored
    let size = l.transformer_size().unwrap();
    assert_eq!(size.blocks.len(), 2);
    let floor = |offload| streaming_floor(&size, offload);
    for offload in [Offload::Disk, Offload::Cpu] {
        let l = ledger(
            dir.path(),
            loras.clone(),
            policy(offload, Some(floor(offload))),
        );
        assert_eq!(l.check_memory().unwrap(), Some(0), "{offload:?}");
        assert_eq!(forward(&l), resident, "{offload:?}");
        let short = ledger(
            dir.path(),
            vec![],
            policy(offload, Some(floor(offload) - 1)),
        );
        assert!(matches!(
            short.check_memory(),
            Err(Error::MemoryBudget { .. })
        ));
    }
}

#[test]
fn budgets_that_cannot_hold_the_model_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let policy = |offload, max_memory| MemoryPolicy {
        offload,
        max_memory,
        ..Default::default()
    };
    for offload in [Offload::None, Offload::Disk, Offload::Cpu] {
        let l = ledger(dir.path(), vec![], policy(offload, Some(1000)));
        let err = l.check_memory().unwrap_err();
        assert!(
            matches!(err, Error::MemoryBudget { budget_mb: 0, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("transformer"), "{err}");
        // the model itself refuses the same way
        assert!(matches!(
            l.transformer().map(|_| ()).unwrap_err(),
            Error::MemoryBudget { .. }
        ));
    }
}

fn encoder_ledger(dir: &std::path::Path, memory: MemoryPolicy) -> ModelLedger {
    let tiny = ltx_pipelines::tiny::ensure_tiny_model(&dir.join("tiny")).unwrap();
    let mut l = ModelLedger::new(
        DType::F32,
        Device::Cpu,
        tiny.checkpoint,
        Some(tiny.gemma_root),
        None,
        vec![],
    )
    .unwrap();
    l.memory = memory;
    l
}

/// Every hidden state of a prompt, flattened.
fn encode(l: &ModelLedger) -> Vec<Vec<f32>> {
    let (states, _) = l
        .text_encoder()
        .unwrap()
        .encode("a cat on a red sofa")
        .unwrap();
    states
        .iter()
        .map(|t| t.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .collect()
}

#[test]
fn streamed_text_encoder_layers_equal_resident_ones_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let resident = encode(&encoder_ledger(dir.path(), MemoryPolicy::default()));
    let probe = encoder_ledger(dir.path(), MemoryPolicy::default());
    assert_eq!(probe.text_encoder_plan().unwrap(), None);
    let root = ltx_pipelines::tiny::ensure_tiny_model(&dir.path().join("tiny"))
        .unwrap()
        .gemma_root;
    let (outer, layers, stored) =
        ltx_core::text_encoders::gemma::encoders::weight_sizes(&root, DType::F32).unwrap();
    assert!(layers.len() >= 2, "the tiny Gemma has several layers");
    let (max_layer, max_stored) = (*layers.iter().max().unwrap(), *stored.iter().max().unwrap());
    for offload in [Offload::Disk, Offload::Cpu] {
        let in_memory = if offload == Offload::Cpu {
            stored.iter().sum()
        } else {
            0
        };
        let floor = outer + max_layer + max_stored + in_memory;
        let policy = |max| MemoryPolicy {
            quantization: Default::default(),
            offload,
            max_memory: Some(max),
        };
        let l = encoder_ledger(dir.path(), policy(floor));
        assert_eq!(l.text_encoder_plan().unwrap(), Some(0), "{offload:?}");
        assert_eq!(encode(&l), resident, "{offload:?}: every layer streamed");
        let l = encoder_ledger(dir.path(), policy(floor + layers[0]));
        assert_eq!(l.text_encoder_plan().unwrap(), Some(1), "{offload:?}");
        assert_eq!(encode(&l), resident, "{offload:?}: one layer resident");
        let short = encoder_ledger(dir.path(), policy(floor - 1));
        let err = short.text_encoder_plan().unwrap_err();
        assert!(matches!(err, Error::MemoryBudget { .. }), "{err}");
        assert!(err.to_string().contains("text encoder"), "{err}");
        assert!(short.text_encoder().is_err());
    }
}

/// Quantized blocks (fp8-cast, a GGUF type at load, a GGUF file from `ltx quantize`) change the
/// output, stream bit for bit like their resident selves, and take their LoRAs fused narrow.
#[test]
fn quantized_blocks_stream_like_resident_ones() {
    use candle_core::quantized::GgmlDType;
    use ltx_core::quantization::gguf_writer::quantize_transformer;
    use ltx_core::quantization::Quantization;
    use ltx_pipelines::utils::model_paths::{ModelPaths, PathFlags};

    let dir = tempfile::tempdir().unwrap();
    let loras = lora_at_0_8(dir.path());
    let wide = forward(&ledger(dir.path(), loras.clone(), MemoryPolicy::default()));
    let tiny = ltx_pipelines::tiny::ensure_tiny_model(&dir.path().join("tiny")).unwrap();
    for quantization in [Quantization::Fp8Cast, Quantization::Gguf(GgmlDType::Q8_0)] {
        let policy = |offload, max_memory| MemoryPolicy {
            offload,
            max_memory,
            quantization,
        };
        let resident = ledger(dir.path(), loras.clone(), policy(Offload::None, None));
        let narrow = forward(&resident);
        assert_ne!(narrow, wide, "{quantization:?} changes the numbers");
        // the budget counts the blocks as held (narrow), not in the compute dtype
        let size = resident.transformer_size().unwrap();
        let wide_size = ledger(dir.path(), vec![], MemoryPolicy::default())
            .transformer_size()
            .unwrap();
        assert!(size.blocks[0] < wide_size.blocks[0], "{quantization:?}");
        for offload in [Offload::Disk, Offload::Cpu] {
            let floor = streaming_floor(&size, offload);
            let l = ledger(dir.path(), loras.clone(), policy(offload, Some(floor)));
            assert_eq!(l.check_memory().unwrap(), Some(0), "{offload:?}");
            assert_eq!(forward(&l), narrow, "{quantization:?} {offload:?}");
        }
    }
    // a GGUF file written by `ltx quantize` replaces the checkpoint's transformer: the same
    // numbers as quantizing at load
    let gguf = dir.path().join("tiny-q8_0.gguf");
    quantize_transformer(
        &tiny.checkpoint,
        &gguf,
        GgmlDType::Q8_0,
        false,
        &mut |_, _| {},
    )
    .unwrap();
    let paths = ModelPaths::from_flags(PathFlags {
        checkpoint: Some(tiny.checkpoint.clone()),
        transformer: Some(gguf.clone()),
        ..Default::default()
    })
    .unwrap()
    .unwrap();
    let from_file = |memory| {
        let mut l =
            ModelLedger::from_paths(DType::F32, Device::Cpu, paths.clone(), None, loras.clone())
                .unwrap();
        l.memory = memory;
        forward(&l)
    };
    let at_load = forward(&ledger(
        dir.path(),
        loras.clone(),
        MemoryPolicy {
            quantization: Quantization::Gguf(GgmlDType::Q8_0),
            ..Default::default()
        },
    ));
    assert_eq!(from_file(MemoryPolicy::default()), at_load);
    assert_eq!(
        from_file(MemoryPolicy {
            offload: Offload::Disk,
            max_memory: Some(1 << 20),
            ..Default::default()
        }),
        at_load,
        "streamed from the GGUF file"
    );
    // an existing output is refused without --force, and nothing is left half-written
    let err = quantize_transformer(
        &tiny.checkpoint,
        &gguf,
        GgmlDType::Q8_0,
        false,
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("--force"), "{err}");
    quantize_transformer(
        &tiny.checkpoint,
        &gguf,
        GgmlDType::Q4K,
        true,
        &mut |_, _| {},
    )
    .unwrap();
    assert!(!dir.path().join("tiny-q8_0.gguf.partial").exists());
}

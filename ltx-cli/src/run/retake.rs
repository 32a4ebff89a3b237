//! `ltx retake`: regenerate a time window of an existing video (and its audio).

use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::Device;
use ltx_core::device::DTypeChoice;
use ltx_pipelines::retake::{RetakeMode, RetakePipeline, RetakeRequest};

use super::{tiling, Loaded, Output, Target};
use crate::args::inputs::{self, check_output, check_readable};
use crate::args::pipelines::RetakeArgs;
use crate::hub::Variant;
use crate::weights::{self, Needs};

/// A seed from the clock, in the reference's range [0, 2^31).
fn random_seed(started: Instant) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(started.elapsed().as_nanos());
    h.finish() % (1 << 31)
}

pub fn run(args: RetakeArgs, device: &Device, dtype: Option<DTypeChoice>) -> Result<()> {
    let started = Instant::now();
    let target = Target::new(device, dtype);
    check_output(&args.output_path, args.run.force)?;
    if args.keep_video && args.keep_audio {
        bail!("--keep-video and --keep-audio together leave nothing to regenerate");
    }
    check_readable("source video", &args.video_path)?;
    let loras = inputs::loras(&args.run.loras)?;
    if !args.distilled {
        inputs::check_guidance(&args.guidance)?;
    }
    super::coreml::check_flags(&args.model.vae, args.run.tiled_decode)?;
    let seed = u64::try_from(args.seed).unwrap_or_else(|_| random_seed(started));
    let req = RetakeRequest {
        video_path: args.video_path.clone(),
        prompt: args.prompt.clone(),
        start_time: args.start_time,
        end_time: args.end_time,
        seed,
        noise: args.run.noise.kind(),
        regenerate_video: !args.keep_video,
        regenerate_audio: !args.keep_audio,
        tiling: tiling(args.run.tiled_decode),
        enhance_prompt: inputs::enhancement(&args.run)?,
    };
    // the source's size, length and rate, and the window, are checked before any model loads
    let source = req.probe()?;

    let needs = Needs {
        variant: if args.distilled {
            Variant::Distilled
        } else {
            Variant::Dev
        },
        upsampler: false,
        hub_distilled_lora: false,
        duration_head: false,
    };
    let mut loaded = Loaded::new(
        weights::resolve(&args.model.weights, needs)?,
        loras,
        &target,
        args.model.memory.policy(),
    )?;
    let mode = if args.distilled {
        RetakeMode::Distilled
    } else {
        let g = inputs::guidance(&args.guidance, &loaded.facts.params, loaded.weights.tiny);
        g.validate()?;
        g.validate_for_model(loaded.facts.num_blocks)?;
        RetakeMode::Dev(g)
    };
    loaded.apply_vae_backend(
        &args.model.vae,
        (source.frames, source.height, source.width),
        args.run.tiled_decode,
    )?;
    if seed != args.seed as u64 {
        eprintln!("seed: {seed}");
    }
    let mut output = Output::create(
        &args.output_path,
        (source.width, source.height),
        source.fps,
        loaded.facts.audio_rate,
        started,
    )?;
    let pipeline = RetakePipeline::new(loaded.ledger);
    let (audio, _) = output.run(|io| pipeline.run(&req, &mode, io))?;
    let window = format!("; {:.2}-{:.2} s regenerated", req.start_time, req.end_time);
    output.finish(&audio, &window)?;
    Ok(())
}

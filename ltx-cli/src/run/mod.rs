//! Running a generation command. Every command goes the same way: its inputs checked (paths,
//! numbers, output folder: [`crate::args::inputs`]), then the weights resolved (a download at
//! most), the checkpoint's header read (preset, block count, audio rate), the ledger built, and
//! only then the pipeline run into an MP4 writer.

mod coreml;
pub mod generate;
pub mod retake;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use ltx_core::device::DTypeChoice;
use ltx_core::model::video_vae::decoder::rgb_frames_to_uint8;
use ltx_core::model::video_vae::TilingConfig;
use ltx_core::types::Audio;
use ltx_pipelines::media::video::Mp4Writer;
use ltx_pipelines::utils::model_ledger::{LoraSpec, ModelLedger};
use ltx_pipelines::utils::offload::MemoryPolicy;
use ltx_pipelines::utils::types::{ProgressEvent, RunIo};

use crate::args::VaeBackendArgs;
use crate::progress::Bars;
use crate::weights::{CheckpointFacts, Weights};

/// The device and compute dtype of the run.
#[derive(Clone)]
pub struct Target {
    pub device: Device,
    pub dtype: DType,
}

impl Target {
    pub fn new(device: &Device, dtype: Option<DTypeChoice>) -> Self {
        Self {
            device: device.clone(),
            dtype: ltx_core::device::resolve_dtype(dtype, device),
        }
    }
}

/// The weights of a run, what their header says, and the ledger over them (nothing loaded yet).
pub struct Loaded {
    pub weights: Weights,
    pub facts: CheckpointFacts,
    pub ledger: ModelLedger,
}

impl Loaded {
    /// Reads the headers and opens the ledger, which checks every path, that the parts belong
    /// together (text encoder and VAEs against the transformer) and that the memory policy can
    /// hold the transformer and the text encoder.
    pub fn new(
        weights: Weights,
        loras: Vec<LoraSpec>,
        target: &Target,
        memory: MemoryPolicy,
    ) -> Result<Self> {
        let facts = CheckpointFacts::read(&weights)?;
        let mut ledger = ModelLedger::from_paths(
            target.dtype,
            target.device.clone(),
            weights.paths.clone(),
            weights.upsampler.clone(),
            loras,
        )?;
        ledger.memory = memory;
        ledger.check_compatibility()?;
        ledger.check_memory()?;
        ledger.text_encoder_plan()?;
        Ok(Self {
            weights,
            facts,
            ledger,
        })
    }

    /// Decodes through Core ML when `--vae-backend coreml` asks for it, after checking that the
    /// package decodes an output of `frames` x `height` x `width`.
    pub fn apply_vae_backend(
        &mut self,
        args: &VaeBackendArgs,
        (frames, height, width): (usize, usize, usize),
        tiled: bool,
    ) -> Result<()> {
        let latent = [128, (frames - 1) / 8 + 1, height / 32, width / 32];
        coreml::install(args, &mut self.ledger, latent, tiled)
    }
}

/// `--tiled-decode`: the reference's default tiling.
pub fn tiling(tiled: bool) -> Option<TilingConfig> {
    tiled.then(TilingConfig::reference_default)
}

/// The MP4 a run writes, its progress bars and the frames written so far.
pub struct Output {
    started: Instant,
    writer: Mp4Writer,
    bars: Bars,
    frames: usize,
    size: (usize, usize),
    fps: f64,
}

impl Output {
    /// `size` = (width, height).
    pub fn create(
        path: &Path,
        size: (usize, usize),
        fps: f64,
        audio_rate: u32,
        started: Instant,
    ) -> Result<Self> {
        let writer = Mp4Writer::create(path, size.0, size.1, fps, Some(audio_rate))?;
        Ok(Self {
            started,
            writer,
            bars: Bars::default(),
            frames: 0,
            size,
            fps,
        })
    }

    /// Runs `f` with the progress bars and the frame sink of this output.
    pub fn run<T>(&mut self, f: impl FnOnce(RunIo) -> ltx_pipelines::Result<T>) -> Result<T> {
        let (bars, writer, frames) = (&mut self.bars, &mut self.writer, &mut self.frames);
        let mut progress = |e| bars.event(e);
        let mut sink = |chunk: Tensor| {
            *frames += chunk.dim(0)?;
            writer.write_frames(&rgb_frames_to_uint8(&chunk)?)
        };
        Ok(f(RunIo {
            progress: &mut progress,
            sink: &mut sink,
        })?)
    }

    /// Muxes the soundtrack, renames the MP4 into place and reports it (`what`: extra words
    /// for the summary line).
    pub fn finish(mut self, audio: &Audio, what: &str) -> Result<PathBuf> {
        self.bars.event(ProgressEvent::Stage {
            name: "mux",
            total: 0,
        });
        self.writer.write_audio(audio)?;
        let path = self.writer.finish()?;
        self.bars.finish();
        let seconds =
            audio.waveform.dim(candle_core::D::Minus1)? as f64 / audio.sampling_rate as f64;
        eprintln!(
            "wrote {} ({} frames {}x{} at {:.3} fps, {seconds:.2} s of audio at {} Hz{what}) in {:.1} s",
            path.display(),
            self.frames,
            self.size.0,
            self.size.1,
            self.fps,
            audio.sampling_rate,
            self.started.elapsed().as_secs_f64()
        );
        Ok(path)
    }
}

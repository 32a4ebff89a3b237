//! One argument struct per pipeline command.

use std::path::PathBuf;

use super::{CommonArgs, GuidanceArgs, GuidedArgs, ModelArgs, RunArgs};

/// `ltx generate` / `ltx distilled`.
#[derive(clap::Args, Debug)]
pub struct DistilledArgs {
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `ltx one-stage`.
#[derive(clap::Args, Debug)]
pub struct OneStageArgs {
    #[command(flatten)]
    pub guided: GuidedArgs,
}

/// `ltx two-stage` and `ltx keyframe-interpolation`.
#[derive(clap::Args, Debug)]
pub struct TwoStageArgs {
    #[command(flatten)]
    pub guided: GuidedArgs,
    /// The distilled LoRA fused into stage 2: PATH [STRENGTH] (from the Hub repo with --model;
    /// required with --checkpoint-path; the built-in tiny model stands in without one).
    #[arg(long, num_args = 1..=2, value_names = ["PATH", "STRENGTH"])]
    pub distilled_lora: Vec<String>,
}

/// `ltx two-stage-hq`.
#[derive(clap::Args, Debug)]
pub struct TwoStageHqArgs {
    #[command(flatten)]
    pub guided: GuidedArgs,
    /// The distilled LoRA, fused into both stages (from the Hub repo with --model; required with
    /// --checkpoint-path).
    #[arg(long, value_name = "PATH")]
    pub distilled_lora: Option<PathBuf>,
    #[arg(long, default_value_t = 0.25)]
    pub distilled_lora_strength_stage_1: f64,
    #[arg(long, default_value_t = 0.5)]
    pub distilled_lora_strength_stage_2: f64,
}

/// `ltx a2vid`.
#[derive(clap::Args, Debug)]
pub struct A2VidArgs {
    #[command(flatten)]
    pub guided: GuidedArgs,
    /// The distilled LoRA fused into stage 2: PATH [STRENGTH].
    #[arg(long, num_args = 1..=2, value_names = ["PATH", "STRENGTH"])]
    pub distilled_lora: Vec<String>,
    /// The soundtrack (WAV, FLAC, MP3, AAC/M4A, or a video's audio track).
    #[arg(long)]
    pub audio_path: PathBuf,
    /// Where in the audio to start, in seconds.
    #[arg(long, default_value_t = 0.0)]
    pub audio_start_time: f64,
    /// At most this many seconds of audio.
    #[arg(long)]
    pub audio_max_duration: Option<f64>,
}

/// `ltx ic-lora`.
#[derive(clap::Args, Debug)]
pub struct IcLoraArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Control video (depth, pose, edges, ...; H.264 MP4) and its strength: PATH STRENGTH
    /// (repeatable). The IC-LoRA itself is given with --lora.
    #[arg(long, num_args = 2, value_names = ["PATH", "STRENGTH"], action = clap::ArgAction::Append, required = true)]
    pub video_conditioning: Vec<String>,
    /// Grayscale mask video scaling how much each region attends to the control video, and the
    /// overall strength: MASK_PATH STRENGTH.
    #[arg(long, num_args = 2, value_names = ["MASK_PATH", "STRENGTH"])]
    pub conditioning_attention_mask: Vec<String>,
    /// Attention strength to the control video without a mask, in [0, 1].
    #[arg(long, default_value_t = 1.0)]
    pub conditioning_attention_strength: f64,
    /// Skip the upsampling and refinement stage: the output is half the height and width.
    #[arg(long)]
    pub skip_stage_2: bool,
}

/// `ltx retake`.
#[derive(clap::Args, Debug)]
pub struct RetakeArgs {
    /// The source video (H.264 MP4, 8k+1 frames, sides multiples of 32); its audio track, if any,
    /// is retaken too.
    #[arg(long)]
    pub video_path: PathBuf,
    /// Text prompt for the regenerated window.
    #[arg(long)]
    pub prompt: String,
    /// Start of the window to regenerate, in seconds.
    #[arg(long)]
    pub start_time: f64,
    /// End of the window (exclusive), in seconds.
    #[arg(long)]
    pub end_time: f64,
    /// Output MP4 (the source's size, frame count and rate).
    #[arg(long, default_value = "output.mp4")]
    pub output_path: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Random seed; a negative value picks one at random.
    #[arg(long, default_value_t = 42, allow_negative_numbers = true)]
    pub seed: i64,
    /// The checkpoint is the distilled model: its 8-step schedule, no guidance.
    #[arg(long)]
    pub distilled: bool,
    /// Keep the source video as it is (regenerate only the audio window).
    #[arg(long)]
    pub keep_video: bool,
    /// Keep the source audio as it is (regenerate only the video window).
    #[arg(long)]
    pub keep_audio: bool,
    #[command(flatten)]
    pub guidance: GuidanceArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

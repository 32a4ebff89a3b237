//! Port of the automatic-duration helpers of `ltx_pipelines/utils/` (reference 1.2.0):
//! `snap_frames_to_grid` and `seconds_to_clamped_num_frames` (`helpers.py`), `AutoDuration`
//! (`types.py`), `DurationPredictor`, `require_num_frames_source` and `resolve_num_frames`
//! (`blocks.py`). The LTX-2.5 duration head predicts seconds; these turn them into a frame count
//! on the causal VAE's `8k + 1` grid.

use candle_core::{DType, Device, Tensor};
use ltx_core::loader::SafetensorsFiles;
use ltx_core::model::duration_head::{duration_head_key_ops, DurationHead, DurationHeadConfig};
use ltx_core::types::SpatioTemporalScaleFactors;

use crate::{Error, Result};

/// Python's `round(x)` of a float to an integer: ties to even, and an error where Python raises
/// (`ValueError` for NaN, `OverflowError` for ±inf). Values beyond `i64` saturate, which the
/// callers' clamps make equivalent to Python's unbounded integers.
fn python_round(x: f64, what: &str) -> Result<i64> {
    if !x.is_finite() {
        return Err(Error::InvalidArgument(format!(
            "{what} is {x}: it cannot be rounded to a frame count"
        )));
    }
    Ok(x.round_ties_even() as i64)
}

/// The reference's `snap_frames_to_grid`: `frames` rounded down to the nearest `k·time_scale + 1`
/// (a valid causal-VAE frame count). `frames` must be at least 1.
pub fn snap_frames_to_grid(frames: i64, time_scale: i64) -> Result<i64> {
    if frames < 1 {
        return Err(Error::InvalidArgument(format!(
            "frames must be >= 1, got {frames}"
        )));
    }
    Ok((frames - 1).div_euclid(time_scale) * time_scale + 1)
}

/// The reference's `seconds_to_clamped_num_frames` with the video scale factors (time 8):
/// `round(seconds · frame_rate)` (ties to even) clamped to `[min_frames, max_frames]`, snapped
/// down to the `8k + 1` grid; when that falls below `min_frames` the next grid point up is taken
/// instead, capped at `max_frames` (which may leave the grid). Like the reference it does not
/// check `min_frames ≤ max_frames` (the lower bound is applied last); it fails where the
/// reference raises: a non-finite `seconds · frame_rate`, or a clamped count below 1.
pub fn seconds_to_clamped_num_frames(
    seconds: f64,
    frame_rate: f64,
    min_frames: i64,
    max_frames: i64,
) -> Result<i64> {
    let time_scale = SpatioTemporalScaleFactors::default().time as i64;
    let raw = python_round(seconds * frame_rate, "duration × frame rate")?;
    let raw = min_frames.max(raw.min(max_frames));
    let frames = snap_frames_to_grid(raw, time_scale)?;
    if frames >= min_frames {
        return Ok(frames);
    }
    // ceil((min_frames - 1) / time_scale) with floor division, as the reference spells it
    let up = -(-(min_frames - 1)).div_euclid(time_scale) * time_scale + 1;
    Ok(up.min(max_frames))
}

/// Request for a predicted duration clamped to `[min_seconds, max_seconds]` (the reference's
/// `AutoDuration`; defaults 1 s and 20 s).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AutoDuration {
    pub min_seconds: f64,
    pub max_seconds: f64,
}

impl AutoDuration {
    /// Errors unless both bounds are finite and `min_seconds <= max_seconds`.
    pub fn validate(&self) -> Result<()> {
        let (lo, hi) = (self.min_seconds, self.max_seconds);
        if !lo.is_finite() || !hi.is_finite() || lo > hi {
            return Err(Error::InvalidArgument(format!(
                "the duration window [{lo}, {hi}] s must be finite with min <= max"
            )));
        }
        Ok(())
    }
}

impl Default for AutoDuration {
    fn default() -> Self {
        Self {
            min_seconds: 1.0,
            max_seconds: 20.0,
        }
    }
}

/// A pipeline's `num_frames`: a fixed count or one predicted by the duration head.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NumFrames {
    Fixed(usize),
    Auto(AutoDuration),
}

/// The reference's `DurationPredictor`: the duration head plus the conversion of its prediction
/// into a frame count. The head is a few MB, so it is held for the predictor's lifetime.
#[derive(Clone, Debug)]
pub struct DurationPredictor {
    head: DurationHead,
}

impl DurationPredictor {
    pub fn new(head: DurationHead) -> Self {
        Self { head }
    }

    /// The predictor of a checkpoint, or `None` when it has no `duration_head.*` weights (files
    /// older than LTX-2.5). Unlike the reference, whose non-strict load turns a partial head into
    /// `None` too, a head with some tensors missing or mis-shaped is an error naming the key.
    pub fn from_files(
        files: &SafetensorsFiles,
        dtype: DType,
        device: &Device,
    ) -> Result<Option<Self>> {
        let sd = std::sync::Arc::new(files.state_dict(&duration_head_key_ops())?);
        if sd.is_empty() {
            tracing::info!("the checkpoint has no duration head: automatic duration unavailable");
            return Ok(None);
        }
        let cfg = DurationHeadConfig::from_checkpoint_config(&files.config()?)?;
        let head = DurationHead::new(&cfg, sd.var_builder(dtype, device))?;
        sd.report_unused("duration_head");
        Ok(Some(Self::new(head)))
    }

    pub fn head(&self) -> &DurationHead {
        &self.head
    }

    /// Frame count for one prompt from its connector outputs (`[1, T, D]` each; either may be
    /// `None`, not both): the head's seconds converted by [`seconds_to_clamped_num_frames`] with
    /// `round(min_seconds · frame_rate)` / `round(max_seconds · frame_rate)` as bounds, with a
    /// warning when the prediction lies outside the window.
    pub fn predict(
        &self,
        video: Option<&Tensor>,
        audio: Option<&Tensor>,
        frame_rate: f64,
        window: AutoDuration,
    ) -> Result<usize> {
        let AutoDuration {
            min_seconds,
            max_seconds,
        } = window;
        if !frame_rate.is_finite() || frame_rate <= 0.0 {
            return Err(Error::InvalidArgument(format!(
                "the frame rate must be a positive number, got {frame_rate}"
            )));
        }
        window.validate()?;
        if video.is_none() && audio.is_none() {
            return Err(Error::InvalidArgument(
                "duration prediction needs video or audio connector outputs".into(),
            ));
        }
        let pred = self.head.forward(video, audio)?;
        if pred.dims() != [1] {
            return Err(Error::InvalidArgument(format!(
                "duration prediction takes a single-item batch, the head returned shape {:?}",
                pred.dims()
            )));
        }
        let seconds = pred.to_dtype(DType::F64)?.to_vec1::<f64>()?[0];
        if !seconds.is_finite() {
            return Err(Error::InvalidArgument(format!(
                "the duration head predicted {seconds} s"
            )));
        }
        let min_frames = python_round(min_seconds * frame_rate, "min_seconds × frame rate")?;
        let max_frames = python_round(max_seconds * frame_rate, "max_seconds × frame rate")?;
        let frames = seconds_to_clamped_num_frames(seconds, frame_rate, min_frames, max_frames)?;
        let frames = usize::try_from(frames).map_err(|_| {
            Error::InvalidArgument(format!(
                "the duration window [{min_seconds}, {max_seconds}] s at {frame_rate} fps gives \
                 {frames} frames"
            ))
        })?;
        if seconds > max_seconds || seconds < min_seconds {
            tracing::warn!(
                "duration head prediction clamped: {seconds:.2} s is outside [{min_seconds:.2}, \
                 {max_seconds:.2}] s; using {:.2} s ({frames} frames) at {frame_rate:.2} fps",
                frames as f64 / frame_rate
            );
        } else {
            tracing::info!(
                "duration head predicted {seconds:.2} s ({frames} frames at {frame_rate:.2} fps)"
            );
        }
        Ok(frames)
    }
}

/// The reference's `require_num_frames_source`: an automatic duration needs a predictor. Called
/// before any expensive work.
pub fn require_num_frames_source(
    num_frames: NumFrames,
    predictor: Option<&DurationPredictor>,
) -> Result<()> {
    if matches!(num_frames, NumFrames::Auto(_)) && predictor.is_none() {
        return Err(Error::InvalidArgument(
            "an automatic duration was requested but the checkpoint has no duration head (it ships \
             from LTX-2.5 on): give the number of frames"
                .into(),
        ));
    }
    Ok(())
}

/// The reference's `resolve_num_frames`: the fixed count, or the predictor's count from the
/// encoded prompt.
pub fn resolve_num_frames(
    num_frames: NumFrames,
    predictor: Option<&DurationPredictor>,
    video_encoding: Option<&Tensor>,
    audio_encoding: Option<&Tensor>,
    frame_rate: f64,
) -> Result<usize> {
    match num_frames {
        NumFrames::Fixed(n) => Ok(n),
        NumFrames::Auto(window) => {
            require_num_frames_source(num_frames, predictor)?;
            let predictor = predictor.expect("checked above");
            predictor.predict(video_encoding, audio_encoding, frame_rate, window)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ltx_core::loader::synthetic::{random_weights, save_safetensors};
    use ltx_core::loader::StateDict;
    use std::collections::HashMap;
    use std::sync::Arc;

    fn tiny_config() -> serde_json::Value {
        serde_json::json!({
            "transformer": {"cross_attention_dim": 8, "audio_cross_attention_dim": 4},
            "duration_head": {"pooler_hidden_dim": 8, "num_queries": 2, "num_pooler_heads": 2, "mlp_hidden": 4}
        })
    }

    fn tiny_weights() -> Result<HashMap<String, Tensor>> {
        let cfg = DurationHeadConfig::from_checkpoint_config(&tiny_config())?;
        Ok(random_weights(3, DType::F32, "", |vb| {
            DurationHead::new(&cfg, vb)
        })?)
    }

    fn tiny_predictor() -> Result<DurationPredictor> {
        let cfg = DurationHeadConfig::from_checkpoint_config(&tiny_config())?;
        let sd = Arc::new(StateDict::from_tensors(tiny_weights()?));
        let head = DurationHead::new(&cfg, sd.var_builder(DType::F32, &Device::Cpu))?;
        Ok(DurationPredictor::new(head))
    }

    fn tokens(b: usize, t: usize, d: usize) -> Result<Tensor> {
        Ok(Tensor::ones((b, t, d), DType::F32, &Device::Cpu)?)
    }

    #[test]
    fn frames_stay_in_the_window_and_on_the_grid() -> Result<()> {
        for &fps in &[8.0, 23.976, 24.0, 25.0, 30.0, 59.94] {
            for i in 0..200 {
                let seconds = i as f64 * 0.137;
                let (lo, hi) = (python_round(fps, "fps")?, python_round(20.0 * fps, "fps")?);
                let n = seconds_to_clamped_num_frames(seconds, fps, lo, hi)?;
                assert!((lo..=hi).contains(&n), "{seconds} s at {fps}: {n}");
                assert!(
                    (n - 1) % 8 == 0 || n == hi,
                    "{seconds} s at {fps}: {n} off the grid"
                );
            }
        }
        // Python's round: ties to even (12.5 -> 12, 37.5 -> 38, before snapping)
        assert_eq!(python_round(12.5, "x")?, 12);
        assert_eq!(python_round(37.5, "x")?, 38);
        assert_eq!(python_round(-2.5, "x")?, -2);
        Ok(())
    }

    #[test]
    fn frame_errors_where_the_reference_raises() {
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(seconds_to_clamped_num_frames(bad, 24.0, 1, 100).is_err());
        }
        // clamped to 0 frames: snap_frames_to_grid refuses
        assert!(seconds_to_clamped_num_frames(0.0, 24.0, 0, 100).is_err());
        assert!(seconds_to_clamped_num_frames(5.0, 24.0, -3, 0).is_err());
        assert!(snap_frames_to_grid(0, 8).is_err());
    }

    #[test]
    fn predictor_rejects_bad_inputs() -> Result<()> {
        let p = tiny_predictor()?;
        let (v, a) = (tokens(1, 3, 8)?, tokens(1, 2, 4)?);
        let ok = AutoDuration::default();
        assert!(p.predict(Some(&v), Some(&a), 24.0, ok)? >= 1);
        assert!(p.predict(None, Some(&a), 24.0, ok)? >= 1);
        let invalid = |r: Result<usize>| matches!(r, Err(Error::InvalidArgument(_)));
        // a batch of two
        let v2 = tokens(2, 3, 8)?;
        assert!(invalid(p.predict(Some(&v2), None, 24.0, ok)));
        // min above max, non-finite bounds
        let window = |min_seconds, max_seconds| AutoDuration {
            min_seconds,
            max_seconds,
        };
        assert!(invalid(p.predict(Some(&v), None, 24.0, window(5.0, 2.0))));
        assert!(invalid(p.predict(
            Some(&v),
            None,
            24.0,
            window(f64::NAN, 2.0)
        )));
        assert!(invalid(p.predict(
            Some(&v),
            None,
            24.0,
            window(1.0, f64::INFINITY)
        )));
        // frame rates
        for fps in [0.0, -24.0, f64::NAN, f64::INFINITY] {
            assert!(invalid(p.predict(Some(&v), None, fps, ok)), "{fps}");
        }
        // neither stream
        assert!(invalid(p.predict(None, None, 24.0, ok)));
        // a wrong width is the head's typed shape error
        assert!(matches!(
            p.predict(Some(&a), None, 24.0, ok),
            Err(Error::Core(ltx_core::Error::TensorShape { .. }))
        ));
        Ok(())
    }

    #[test]
    fn num_frames_resolution() -> Result<()> {
        let p = tiny_predictor()?;
        let auto = NumFrames::Auto(AutoDuration::default());
        assert!(require_num_frames_source(auto, None).is_err());
        assert!(require_num_frames_source(NumFrames::Fixed(9), None).is_ok());
        assert_eq!(
            resolve_num_frames(NumFrames::Fixed(9), None, None, None, 24.0)?,
            9
        );
        let v = tokens(1, 3, 8)?;
        let want = p.predict(Some(&v), None, 24.0, AutoDuration::default())?;
        assert_eq!(
            resolve_num_frames(auto, Some(&p), Some(&v), None, 24.0)?,
            want
        );
        Ok(())
    }

    #[test]
    fn from_files_finds_or_skips_the_head() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let with = dir.path().join("with.safetensors");
        let weights: HashMap<String, Tensor> = tiny_weights()?
            .into_iter()
            .map(|(k, v)| (format!("duration_head.{k}"), v))
            .collect();
        let meta = HashMap::from([("config".to_string(), tiny_config().to_string())]);
        save_safetensors(&with, &weights, meta.clone())?;
        let files = SafetensorsFiles::open(&[&with])?;
        assert!(DurationPredictor::from_files(&files, DType::F32, &Device::Cpu)?.is_some());

        let without = dir.path().join("without.safetensors");
        let other = HashMap::from([("vae.x".to_string(), tokens(1, 1, 1)?)]);
        save_safetensors(&without, &other, meta)?;
        let files = SafetensorsFiles::open(&[&without])?;
        assert!(DurationPredictor::from_files(&files, DType::F32, &Device::Cpu)?.is_none());
        Ok(())
    }
}

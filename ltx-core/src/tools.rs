//! Port of `ltx_core/tools.py`: building the initial [`LatentState`] of each modality, and moving
//! a state between the latent grid and the token sequence.

use candle_core::{DType, Device, Tensor};

use crate::components::patchifiers::{get_pixel_coords, AudioPatchifier, VideoLatentPatchifier};
use crate::error::{bad_shape, Result};
use crate::types::{AudioLatentShape, LatentState, SpatioTemporalScaleFactors, VideoLatentShape};

/// What the denoising loop and the conditioning items need from a modality's tools.
pub trait LatentTools {
    /// Tokens of the target grid (conditioning tokens are appended after them).
    fn token_count(&self) -> usize;
    /// Batch size of the target grid.
    fn batch(&self) -> usize;
    /// A fresh patchified state: `initial_latent` (or zeros) as both latent and clean latent, a
    /// denoise mask of ones (f32), and the tokens' positions.
    fn create_initial_state(
        &self,
        device: &Device,
        dtype: DType,
        initial_latent: Option<&Tensor>,
    ) -> Result<LatentState>;
    /// Grid layout -> token layout (latent, clean latent, denoise mask).
    fn patchify(&self, state: &LatentState) -> Result<LatentState>;
    /// Token layout -> grid layout (latent, clean latent, denoise mask).
    fn unpatchify(&self, state: &LatentState) -> Result<LatentState>;

    /// Drops the conditioning tokens appended after the target grid's tokens, resets the denoise
    /// mask to ones and removes the attention mask.
    fn clear_conditioning(&self, state: &LatentState) -> Result<LatentState> {
        let n = self.token_count();
        let have = state.latent.dim(1)?;
        if have < n {
            return Err(bad_shape(
                "latent state",
                state.latent.dims(),
                format!("at least {n} tokens"),
            ));
        }
        Ok(LatentState {
            latent: state.latent.narrow(1, 0, n)?,
            clean_latent: state.clean_latent.narrow(1, 0, n)?,
            denoise_mask: state.denoise_mask.ones_like()?.narrow(1, 0, n)?,
            positions: state.positions.narrow(2, 0, n)?,
            attention_mask: None,
            keyframes_mask: None,
            frozen: state.frozen,
        })
    }
}

/// The state with `f` applied to the latent and the clean latent and `mask_f` to the denoise mask.
fn map_state(
    state: &LatentState,
    f: impl Fn(&Tensor) -> Result<Tensor>,
    mask_f: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<LatentState> {
    Ok(LatentState {
        latent: f(&state.latent)?,
        clean_latent: f(&state.clean_latent)?,
        denoise_mask: mask_f(&state.denoise_mask)?,
        positions: state.positions.clone(),
        attention_mask: state.attention_mask.clone(),
        // the marker shares the denoise mask's layout and converts with it
        keyframes_mask: state.keyframes_mask.as_ref().map(&mask_f).transpose()?,
        frozen: state.frozen,
    })
}

/// The grid-layout initial state: `initial` (checked against `dims.0`) or zeros, an all-ones
/// f32 denoise mask of `dims.1`, and `positions`.
fn initial_state(
    what: &str,
    dims: (Vec<usize>, Vec<usize>),
    initial: Option<&Tensor>,
    positions: Tensor,
    (dtype, device): (DType, &Device),
) -> Result<LatentState> {
    let latent = match initial {
        Some(t) => {
            check_dims(&format!("initial {what} latent"), t, &dims.0)?;
            t.clone()
        }
        None => Tensor::zeros(dims.0.as_slice(), dtype, device)?,
    };
    Ok(LatentState {
        clean_latent: latent.clone(),
        latent,
        denoise_mask: Tensor::ones(dims.1.as_slice(), DType::F32, device)?,
        positions,
        attention_mask: None,
        keyframes_mask: None,
        frozen: false,
    })
}

/// A patchified state back in grid layout: the latents unpatchified to `shapes.0`, the denoise
/// mask to `shapes.1`.
fn unpatchify_with<S>(
    state: &LatentState,
    shapes: (S, S),
    unpatchify: impl Fn(&Tensor, &S) -> Result<Tensor>,
) -> Result<LatentState> {
    map_state(
        state,
        |t| unpatchify(t, &shapes.0),
        |t| unpatchify(t, &shapes.1),
    )
}

fn check_dims(what: &str, t: &Tensor, want: &[usize]) -> Result<()> {
    if t.dims() != want {
        return Err(bad_shape(what, t.dims(), format!("{want:?}")));
    }
    Ok(())
}

/// Latent tools of the video modality.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VideoLatentTools {
    pub patchifier: VideoLatentPatchifier,
    pub target_shape: VideoLatentShape,
    pub fps: f64,
    pub scale_factors: SpatioTemporalScaleFactors,
    /// Map latent frame 0 to the single pixel frame the causal VAE encodes it from.
    pub causal_fix: bool,
}

impl VideoLatentTools {
    /// Tools with the default scale factors (8, 32, 32) and the causal fix, as the pipelines use.
    pub fn new(
        patchifier: VideoLatentPatchifier,
        target_shape: VideoLatentShape,
        fps: f64,
    ) -> Self {
        Self {
            patchifier,
            target_shape,
            fps,
            scale_factors: SpatioTemporalScaleFactors::default(),
            causal_fix: true,
        }
    }

    /// Token positions `[B, 3, N, 2]` for a video latent grid, in the reference's arithmetic:
    /// pixel-space bounds as f32, the frame axis divided by `fps` (in f32).
    pub fn positions_for(
        &self,
        shape: &VideoLatentShape,
        causal_fix: bool,
        frame_offset: i64,
        device: &Device,
    ) -> Result<Tensor> {
        self.positions_with(shape, causal_fix, frame_offset, false, device)
    }

    /// [`Self::positions_for`]; with `single_pixel_frame` every token's frame range ends one pixel
    /// frame after it starts (a keyframe latent that encodes one image, reference 1.2.0).
    pub fn positions_with(
        &self,
        shape: &VideoLatentShape,
        causal_fix: bool,
        frame_offset: i64,
        single_pixel_frame: bool,
        device: &Device,
    ) -> Result<Tensor> {
        let bounds = self.patchifier.get_patch_grid_bounds(shape, device)?;
        let mut coords = get_pixel_coords(&bounds, self.scale_factors, causal_fix)?;
        if frame_offset != 0 {
            let offset = Tensor::new(&[frame_offset, 0, 0], device)?.reshape((1, 3, 1, 1))?;
            coords = coords.broadcast_add(&offset)?;
        }
        if single_pixel_frame {
            let frame = coords.narrow(1, 0, 1)?;
            let start = frame.narrow(3, 0, 1)?;
            let frame = Tensor::cat(&[start.clone(), (start + 1.0)?], 3)?;
            coords = Tensor::cat(&[frame, coords.narrow(1, 1, 2)?], 1)?;
        }
        let coords = coords.to_dtype(DType::F32)?;
        let fps = Tensor::new(self.fps as f32, device)?;
        let time = coords.narrow(1, 0, 1)?.broadcast_div(&fps)?;
        Ok(Tensor::cat(&[time, coords.narrow(1, 1, 2)?], 1)?)
    }
}

impl VideoLatentTools {
    /// Tokens of one latent frame of the target grid.
    pub fn tokens_per_latent_frame(&self) -> usize {
        let one = VideoLatentShape {
            frames: 1,
            batch: 1,
            ..self.target_shape
        };
        self.patchifier.get_token_count(&one)
    }
}

impl LatentTools for VideoLatentTools {
    fn token_count(&self) -> usize {
        self.patchifier.get_token_count(&self.target_shape)
    }

    fn batch(&self) -> usize {
        self.target_shape.batch
    }

    fn create_initial_state(
        &self,
        device: &Device,
        dtype: DType,
        initial_latent: Option<&Tensor>,
    ) -> Result<LatentState> {
        let shape = self.target_shape;
        // Positions stay f32 whatever the model dtype (reference 1.2.0; 1.0.0 rounded them to it).
        let positions = self.positions_for(&shape, self.causal_fix, 0, device)?;
        let dims = (shape.dims().to_vec(), shape.mask_shape().dims().to_vec());
        let state = initial_state("video", dims, initial_latent, positions, (dtype, device))?;
        let state = self.patchify(&state)?;
        // the causal encoder's first latent frame covers one pixel frame: the same token class as
        // a generated keyframe, marked whether or not the model reads the marker
        let mask = &state.denoise_mask;
        let (b, n, c) = mask.dims3()?;
        let first = self.tokens_per_latent_frame().min(n);
        let marked = Tensor::cat(
            &[
                Tensor::ones((b, first, c), mask.dtype(), device)?,
                Tensor::zeros((b, n - first, c), mask.dtype(), device)?,
            ],
            1,
        )?;
        Ok(LatentState {
            keyframes_mask: Some(marked),
            ..state
        })
    }

    fn patchify(&self, state: &LatentState) -> Result<LatentState> {
        check_dims("video latent", &state.latent, &self.target_shape.dims())?;
        let p = |t: &Tensor| self.patchifier.patchify(t);
        map_state(state, p, p)
    }

    fn unpatchify(&self, state: &LatentState) -> Result<LatentState> {
        let shapes = (self.target_shape, self.target_shape.mask_shape());
        unpatchify_with(state, shapes, |t, s| self.patchifier.unpatchify(t, s))
    }
}

/// Latent tools of the audio modality.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AudioLatentTools {
    pub patchifier: AudioPatchifier,
    pub target_shape: AudioLatentShape,
}

impl LatentTools for AudioLatentTools {
    fn token_count(&self) -> usize {
        self.patchifier.get_token_count(&self.target_shape)
    }

    fn batch(&self) -> usize {
        self.target_shape.batch
    }

    fn create_initial_state(
        &self,
        device: &Device,
        dtype: DType,
        initial_latent: Option<&Tensor>,
    ) -> Result<LatentState> {
        let shape = self.target_shape;
        // Audio positions stay f32 (seconds), unlike the video ones.
        let positions = self.patchifier.get_patch_grid_bounds(&shape, device)?;
        let dims = (shape.dims().to_vec(), shape.mask_shape().dims().to_vec());
        let state = initial_state("audio", dims, initial_latent, positions, (dtype, device))?;
        self.patchify(&state)
    }

    fn patchify(&self, state: &LatentState) -> Result<LatentState> {
        check_dims("audio latent", &state.latent, &self.target_shape.dims())?;
        let p = |t: &Tensor| self.patchifier.patchify(t);
        map_state(state, p, p)
    }

    fn unpatchify(&self, state: &LatentState) -> Result<LatentState> {
        let shapes = (self.target_shape, self.target_shape.mask_shape());
        unpatchify_with(state, shapes, |t, s| self.patchifier.unpatchify(t, s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn video_initial_state_shapes_and_causal_positions() -> Result<()> {
        let shape = VideoLatentShape::from_dims(&[1, 4, 3, 2, 2])?;
        let tools = VideoLatentTools::new(VideoLatentPatchifier::new(1)?, shape, 25.0);
        let st = tools.create_initial_state(&Device::Cpu, DType::F32, None)?;
        assert_eq!(st.latent.dims(), &[1, 12, 4]);
        assert_eq!(st.denoise_mask.dims(), &[1, 12, 1]);
        assert_eq!(st.positions.dims(), &[1, 3, 12, 2]);
        // frame bounds: latent frame 0 -> [0, 1) pixel frames, frame 1 -> [1, 9), in seconds
        let t = st.positions.get(0)?.get(0)?.to_vec2::<f32>()?;
        assert_eq!(t[0], [0.0, 1.0 / 25.0]);
        assert_eq!(t[4], [1.0 / 25.0, 9.0 / 25.0]);
        let cleared = tools.clear_conditioning(&st)?;
        assert_eq!(cleared.latent.dims(), st.latent.dims());
        Ok(())
    }

    #[test]
    fn wrong_initial_latent_is_an_error() {
        let shape = VideoLatentShape::from_dims(&[1, 4, 3, 2, 2]).unwrap();
        let tools = VideoLatentTools::new(VideoLatentPatchifier::new(1).unwrap(), shape, 25.0);
        let bad = Tensor::zeros((1, 4, 2, 2, 2), DType::F32, &Device::Cpu).unwrap();
        let err = tools
            .create_initial_state(&Device::Cpu, DType::F32, Some(&bad))
            .unwrap_err();
        assert!(matches!(err, Error::TensorShape { .. }), "{err}");
    }
}

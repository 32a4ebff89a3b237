//! Port of `ltx_core/conditioning/mask_utils.py`: the self-attention mask that grows as
//! conditioning items append reference tokens to the sequence.

use candle_core::{DType, Device, Tensor};

use crate::error::{bad_shape, Error, Result};
use crate::types::LatentState;

/// How strongly newly appended conditioning tokens and the noisy tokens attend to each other.
#[derive(Clone, Debug)]
pub enum AttentionStrength {
    /// One weight for every new token.
    Scalar(f64),
    /// Per-token weights: a 0-D tensor, `[M]` (shared by the batch), `[1, M]` or `[B, M]`.
    Tensor(Tensor),
}

impl From<f64> for AttentionStrength {
    fn from(v: f64) -> Self {
        Self::Scalar(v)
    }
}

/// Resolves an [`AttentionStrength`] to a `[B, M]` cross mask.
pub fn resolve_cross_mask(
    attention_mask: &AttentionStrength,
    num_new_tokens: usize,
    batch_size: usize,
    device: &Device,
    dtype: DType,
) -> Result<Tensor> {
    let full = |v: f64| -> Result<Tensor> {
        if !v.is_finite() {
            return Err(Error::Conditioning(format!(
                "attention strength {v} must be a finite number"
            )));
        }
        Ok(Tensor::full(v, (batch_size, num_new_tokens), device)?.to_dtype(dtype)?)
    };
    let mask = match attention_mask {
        AttentionStrength::Scalar(v) => return full(*v),
        AttentionStrength::Tensor(t) => t.to_device(device)?.to_dtype(dtype)?,
    };
    match *mask.dims() {
        [] => full(mask.to_dtype(DType::F64)?.to_scalar::<f64>()?),
        [m] if m == num_new_tokens => Ok(mask
            .unsqueeze(0)?
            .broadcast_as((batch_size, m))?
            .contiguous()?),
        [b, m] if m == num_new_tokens && (b == batch_size || b == 1) => {
            Ok(mask.broadcast_as((batch_size, m))?.contiguous()?)
        }
        _ => Err(bad_shape(
            "attention mask",
            mask.dims(),
            format!("a scalar, [{num_new_tokens}] or [{batch_size} or 1, {num_new_tokens}]"),
        )),
    }
}

/// The `[B, N+M, N+M]` mask after appending `M` tokens to a sequence of `N` (the first
/// `num_noisy_tokens` of which are the noisy ones):
///
/// ```text
///               noisy        earlier refs   new refs
/// noisy       | existing   | existing     | cross    |
/// earlier refs| existing   | existing     | 0        |
/// new refs    | cross^T    | 0            | 1        |
/// ```
///
/// `existing` is the previous mask (all ones when there was none); `cross` is `[B, M]`.
pub fn build_attention_mask(
    existing_mask: Option<&Tensor>,
    num_noisy_tokens: usize,
    num_new_tokens: usize,
    num_existing_tokens: usize,
    cross_mask: &Tensor,
    device: &Device,
    dtype: DType,
) -> Result<Tensor> {
    let (b, m) = cross_mask.dims2()?;
    let (n, nn) = (num_existing_tokens, num_noisy_tokens);
    if m != num_new_tokens {
        return Err(bad_shape(
            "cross mask",
            cross_mask.dims(),
            format!("[B, {num_new_tokens}]"),
        ));
    }
    if nn > n {
        return Err(Error::Conditioning(format!(
            "{nn} noisy tokens but only {n} tokens in the sequence"
        )));
    }
    let existing = match existing_mask {
        Some(e) => {
            if e.dims() != [b, n, n] {
                return Err(bad_shape(
                    "existing attention mask",
                    e.dims(),
                    format!("[{b}, {n}, {n}]"),
                ));
            }
            e.to_device(device)?.to_dtype(dtype)?
        }
        None => Tensor::ones((b, n, n), dtype, device)?,
    };
    let cross = cross_mask.to_device(device)?.to_dtype(dtype)?;
    let zeros = |r: usize, c: usize| Tensor::zeros((b, r, c), dtype, device);
    let noisy_rows = Tensor::cat(
        &[
            existing.narrow(1, 0, nn)?,
            cross.unsqueeze(1)?.broadcast_as((b, nn, m))?.contiguous()?,
        ],
        2,
    )?;
    let ref_rows = Tensor::cat(&[existing.narrow(1, nn, n - nn)?, zeros(n - nn, m)?], 2)?;
    let new_rows = Tensor::cat(
        &[
            cross.unsqueeze(2)?.broadcast_as((b, m, nn))?.contiguous()?,
            zeros(m, n - nn)?,
            Tensor::ones((b, m, m), dtype, device)?,
        ],
        2,
    )?;
    Ok(Tensor::cat(&[noisy_rows, ref_rows, new_rows], 1)?)
}

/// The mask after `num_new_tokens` tokens are appended to `latent_state`'s sequence: `None` when
/// neither a mask exists nor one is requested; an existing mask grows with full attention for the
/// new tokens when none is requested.
pub fn update_attention_mask(
    latent_state: &LatentState,
    attention_mask: Option<&AttentionStrength>,
    num_noisy_tokens: usize,
    num_new_tokens: usize,
    batch_size: usize,
    device: &Device,
    dtype: DType,
) -> Result<Option<Tensor>> {
    let cross = match attention_mask {
        None => match latent_state.attention_mask {
            None => return Ok(None),
            Some(_) => Tensor::ones((batch_size, num_new_tokens), dtype, device)?,
        },
        Some(spec) => resolve_cross_mask(spec, num_new_tokens, batch_size, device, dtype)?,
    };
    build_attention_mask(
        latent_state.attention_mask.as_ref(),
        num_noisy_tokens,
        num_new_tokens,
        latent_state.latent.dim(1)?,
        &cross,
        device,
        dtype,
    )
    .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_structure() -> Result<()> {
        let dev = Device::Cpu;
        // 3 noisy + 1 earlier reference token, 2 new tokens with weights 0.5 / 0.25
        let cross = Tensor::new(&[[0.5f32, 0.25]], &dev)?;
        let m = build_attention_mask(None, 3, 2, 4, &cross, &dev, DType::F32)?;
        let m = m.get(0)?.to_vec2::<f32>()?;
        assert_eq!(m[0], [1., 1., 1., 1., 0.5, 0.25]);
        assert_eq!(m[3], [1., 1., 1., 1., 0., 0.]);
        assert_eq!(m[4], [0.5, 0.5, 0.5, 0., 1., 1.]);
        assert_eq!(m[5], [0.25, 0.25, 0.25, 0., 1., 1.]);
        Ok(())
    }

    #[test]
    fn bad_masks_are_errors() {
        let dev = Device::Cpu;
        let t = |v: &[f32]| AttentionStrength::Tensor(Tensor::new(v, &dev).unwrap());
        assert!(resolve_cross_mask(&t(&[1.0, 0.5]), 3, 1, &dev, DType::F32).is_err());
        let three_d =
            AttentionStrength::Tensor(Tensor::zeros((1, 1, 3), DType::F32, &dev).unwrap());
        assert!(resolve_cross_mask(&three_d, 3, 1, &dev, DType::F32).is_err());
        let b3 = AttentionStrength::Tensor(Tensor::zeros((3, 2), DType::F32, &dev).unwrap());
        assert!(resolve_cross_mask(&b3, 2, 2, &dev, DType::F32).is_err());
        assert!(
            resolve_cross_mask(&AttentionStrength::Scalar(f64::NAN), 2, 1, &dev, DType::F32)
                .is_err()
        );
        let cross = Tensor::zeros((1, 2), DType::F32, &dev).unwrap();
        let wrong = Tensor::zeros((1, 3, 3), DType::F32, &dev).unwrap();
        assert!(build_attention_mask(Some(&wrong), 2, 2, 4, &cross, &dev, DType::F32).is_err());
    }
}

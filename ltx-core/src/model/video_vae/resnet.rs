//! Port of `ltx_core/model/video_vae/resnet.py`: `ResnetBlock3D` and `UNetMidBlock3D` (`res_x`).

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::convolution::{CausalConv3d, LinearConv3d};
use super::model_configurator::NormLayerType;
use crate::kernels::conv3d::PadMode;
use crate::kernels::pixel_norm::pixel_norm;
use crate::model::common::normalization::{GroupNorm, Norm, PixelNorm};
use crate::model::transformer::timestep_embedding::PixArtAlphaCombinedTimestepSizeEmbeddings;

/// Draws the spatial noise of `inject_noise` layers: called with `[H, W]`, returns a standard
/// normal tensor of that shape. The reference draws from a torch generator; callers who need its
/// exact values pass them in through this hook.
pub struct SpatialNoise {
    draw: Box<DrawFn>,
}

type DrawFn = dyn FnMut(&[usize]) -> Result<Tensor> + Send;

impl SpatialNoise {
    pub fn new(draw: impl FnMut(&[usize]) -> Result<Tensor> + Send + 'static) -> Self {
        Self {
            draw: Box::new(draw),
        }
    }
}

/// Rows of a resnet block's timestep table: shift1, scale1, shift2, scale2.
const RESNET_ADA_ROWS: usize = 4;
const NORM_GROUPS: usize = 32;
const EPS: f64 = 1e-6;

/// `SiLU(norm(x) · (1 + scale) + shift)` — the norm → [AdaLN] → SiLU prologue of every VAE conv,
/// fused into one pass for PixelNorm. `modulation` is `(scale, shift)`, each `[B, C]`.
pub(crate) fn norm_silu(
    norm: &Norm,
    x: &Tensor,
    modulation: Option<(&Tensor, &Tensor)>,
) -> Result<Tensor> {
    match norm {
        Norm::Pixel(p) => pixel_norm(x, p.eps(), modulation, true),
        Norm::Group(_) => {
            let mut h = norm.forward(x)?;
            if let Some((scale, shift)) = modulation {
                let (b, c) = scale.dims2()?;
                let view = |t: &Tensor| t.reshape((b, c, 1, 1, 1));
                h = h
                    .broadcast_mul(&(view(scale)? + 1.0)?)?
                    .broadcast_add(&view(shift)?)?;
            }
            h.silu()
        }
    }
}

pub(crate) fn build_norm(kind: NormLayerType, channels: usize, vb: VarBuilder) -> Result<Norm> {
    Ok(match kind {
        NormLayerType::PixelNorm => Norm::Pixel(PixelNorm::default()),
        NormLayerType::GroupNorm => Norm::Group(GroupNorm::new(NORM_GROUPS, channels, EPS, vb)?),
    })
}

/// One residual block: norm → [AdaLN] → SiLU → conv → [noise] → norm → [AdaLN] → SiLU → conv →
/// [noise], plus a (norm + 1×1×1 conv) shortcut when the width changes.
pub struct ResnetBlock3D {
    norm1: Norm,
    conv1: CausalConv3d,
    norm2: Norm,
    conv2: CausalConv3d,
    per_channel_scale: Option<(Tensor, Tensor)>,
    shortcut: Option<(GroupNorm, LinearConv3d)>,
    scale_shift_table: Option<Tensor>,
}

impl ResnetBlock3D {
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        norm_layer: NormLayerType,
        inject_noise: bool,
        timestep_conditioning: bool,
        pad_mode: PadMode,
        vb: VarBuilder,
    ) -> Result<Self> {
        let conv = |cin, cout, name| CausalConv3d::new(cin, cout, 3, (1, 1), pad_mode, vb.pp(name));
        let per_channel_scale = if inject_noise {
            Some((
                vb.get((in_channels, 1, 1), "per_channel_scale1")?,
                vb.get((in_channels, 1, 1), "per_channel_scale2")?,
            ))
        } else {
            None
        };
        let shortcut = if in_channels != out_channels {
            Some((
                GroupNorm::new(1, in_channels, EPS, vb.pp("norm3"))?,
                LinearConv3d::new(in_channels, out_channels, vb.pp("conv_shortcut"))?,
            ))
        } else {
            None
        };
        let scale_shift_table = if timestep_conditioning {
            Some(vb.get((RESNET_ADA_ROWS, in_channels), "scale_shift_table")?)
        } else {
            None
        };
        Ok(Self {
            norm1: build_norm(norm_layer, in_channels, vb.pp("norm1"))?,
            conv1: conv(in_channels, out_channels, "conv1")?,
            norm2: build_norm(norm_layer, out_channels, vb.pp("norm2"))?,
            conv2: conv(out_channels, out_channels, "conv2")?,
            per_channel_scale,
            shortcut,
            scale_shift_table,
        })
    }

    /// `x` `[B, C, F, H, W]`; `timestep_embed` `[B, 4·C, 1, 1, 1]` when timestep-conditioned.
    pub fn forward(
        &self,
        x: &Tensor,
        causal: bool,
        timestep_embed: Option<&Tensor>,
        mut noise: Option<&mut SpatialNoise>,
    ) -> Result<Tensor> {
        let b = x.dim(0)?;
        // Rows of the table: shift1, scale1, shift2, scale2, each [B, C].
        let ada = match (&self.scale_shift_table, timestep_embed) {
            (Some(table), Some(t)) => {
                let c = table.dim(1)?;
                let t = t.reshape((b, RESNET_ADA_ROWS, c))?;
                let table = table
                    .to_dtype(x.dtype())?
                    .reshape((1, RESNET_ADA_ROWS, c))?;
                let v = table.broadcast_add(&t)?;
                Some(
                    (0..RESNET_ADA_ROWS)
                        .map(|i| v.get_on_dim(1, i))
                        .collect::<Result<Vec<_>>>()?,
                )
            }
            (Some(_), None) => candle_core::bail!("timestep conditioning needs a timestep"),
            _ => None,
        };
        // One binding, reassigned: each intermediate is freed as soon as it is consumed
        // (shadowed `let`s would keep every one alive until the block returns).
        let mut h = norm_silu(&self.norm1, x, ada.as_ref().map(|a| (&a[1], &a[0])))?;
        h = self.conv1.forward(&h, causal)?;
        if let Some((scale1, _)) = &self.per_channel_scale {
            h = add_spatial_noise(&h, scale1, noise.as_deref_mut())?;
        }
        h = norm_silu(&self.norm2, &h, ada.as_ref().map(|a| (&a[3], &a[2])))?;
        h = self.conv2.forward(&h, causal)?;
        if let Some((_, scale2)) = &self.per_channel_scale {
            h = add_spatial_noise(&h, scale2, noise)?;
        }
        let skip = match &self.shortcut {
            Some((norm3, conv)) => conv.forward(&norm3.forward(x)?)?,
            None => x.clone(),
        };
        skip + h
    }
}

/// `h + (noise[H, W] · per_channel_scale[C, 1, 1])` broadcast over batch and frames.
fn add_spatial_noise(
    h: &Tensor,
    per_channel_scale: &Tensor,
    noise: Option<&mut SpatialNoise>,
) -> Result<Tensor> {
    let Some(noise) = noise else {
        candle_core::bail!("this VAE injects noise (`inject_noise`): pass a spatial noise source")
    };
    let (_, c, _, hh, ww) = h.dims5()?;
    let n = (noise.draw)(&[hh, ww])?.to_dtype(h.dtype())?.unsqueeze(0)?;
    let scaled = n.broadcast_mul(&per_channel_scale.to_dtype(h.dtype())?)?;
    h.broadcast_add(&scaled.reshape((1, c, 1, hh, ww))?)
}

/// `UNetMidBlock3D` (`res_x`): `num_layers` resnet blocks sharing one timestep embedder.
pub struct UNetMidBlock3D {
    time_embedder: Option<PixArtAlphaCombinedTimestepSizeEmbeddings>,
    res_blocks: Vec<ResnetBlock3D>,
}

impl UNetMidBlock3D {
    pub fn new(
        channels: usize,
        num_layers: usize,
        norm_layer: NormLayerType,
        inject_noise: bool,
        timestep_conditioning: bool,
        pad_mode: PadMode,
        vb: VarBuilder,
    ) -> Result<Self> {
        let time_embedder = if timestep_conditioning {
            Some(PixArtAlphaCombinedTimestepSizeEmbeddings::new(
                channels * RESNET_ADA_ROWS,
                vb.pp("time_embedder"),
            )?)
        } else {
            None
        };
        let res_blocks = (0..num_layers)
            .map(|i| {
                ResnetBlock3D::new(
                    channels,
                    channels,
                    norm_layer,
                    inject_noise,
                    timestep_conditioning,
                    pad_mode,
                    vb.pp("res_blocks").pp(i),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            time_embedder,
            res_blocks,
        })
    }

    /// `timestep` `[B]` (already scaled by the decoder's multiplier) when timestep-conditioned.
    pub fn forward(
        &self,
        x: &Tensor,
        causal: bool,
        timestep: Option<&Tensor>,
        mut noise: Option<&mut SpatialNoise>,
    ) -> Result<Tensor> {
        let embed = match (&self.time_embedder, timestep) {
            (Some(te), Some(t)) => {
                let e = te.forward(&t.flatten_all()?, x.dtype())?;
                let (b, d) = e.dims2()?;
                Some(e.reshape((b, d, 1, 1, 1))?)
            }
            (Some(_), None) => candle_core::bail!("timestep conditioning needs a timestep"),
            _ => None,
        };
        let mut h = x.clone();
        for block in &self.res_blocks {
            h = block.forward(&h, causal, embed.as_ref(), noise.as_deref_mut())?;
        }
        Ok(h)
    }
}

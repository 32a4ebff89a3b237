//! Port of `ltx_core/model/transformer/transformer.py`: the dual-stream audio-video block.
//!
//! Order per block (LTX-ARCH §4.5): video self-attention and text cross-attention, audio
//! self-attention and text cross-attention, then the audio↔video exchange (both directions read
//! the RMS-normed states after the text step), then each stream's feed-forward.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::adaln::adaln_embedding_coefficient;
use super::attention::{rms_norm, Attention, AttentionInputs};
use super::feed_forward::FeedForward;
use super::text_kv_cache::TextKvCache;
use super::transformer_args::TransformerArgs;
use crate::guidance::perturbations::{BatchedPerturbationConfig, PerturbationType};
use crate::kernels::rows;
use crate::quantization::LinearSource;

/// Widths of one stream inside a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamConfig {
    pub dim: usize,
    pub heads: usize,
    pub d_head: usize,
    pub context_dim: usize,
    pub apply_gated_attention: bool,
    pub cross_attention_adaln: bool,
    /// Biases of the feed-forward linears.
    pub ff_bias: bool,
    /// The text cross-attention's keys and values do not depend on the step: cache them.
    pub text_kv_cache: bool,
}

/// One stream's layers in a block.
#[derive(Clone, Debug)]
struct StreamLayers {
    attn1: Attention,
    attn2: Attention,
    ff: FeedForward,
    scale_shift_table: Tensor,
    prompt_scale_shift_table: Option<Tensor>,
}

/// The audio-video exchange layers.
#[derive(Clone, Debug)]
struct CrossLayers {
    audio_to_video_attn: Attention,
    video_to_audio_attn: Attention,
    table_video: Tensor,
    table_audio: Tensor,
}

/// `BasicAVTransformerBlock`.
#[derive(Clone, Debug)]
pub struct BasicAvTransformerBlock {
    idx: usize,
    video: Option<StreamLayers>,
    audio: Option<StreamLayers>,
    cross: Option<CrossLayers>,
    cross_attention_adaln: bool,
    norm_eps: f64,
}

/// Rows `start..end` of a modulation: `table[rows] + timestep.reshape(B, N, k, D)[:, :, rows]`,
/// one `[B, N, D]` tensor per row.
fn ada_values(table: &Tensor, timestep: &Tensor, start: usize, end: usize) -> Result<Vec<Tensor>> {
    let (k, d) = table.dims2()?;
    let (b, n, _) = timestep.dims3()?;
    let t = timestep
        .reshape((b, n, k, d))?
        .narrow(2, start, end - start)?;
    let rows = table
        .narrow(0, start, end - start)?
        .to_dtype(timestep.dtype())?
        .reshape((1, 1, end - start, d))?;
    let sum = t.broadcast_add(&rows)?;
    (0..end - start)
        .map(|i| sum.narrow(2, i, 1)?.squeeze(2))
        .collect()
}

/// `x·(1 + scale) + shift` (one pass on the CPU in f32).
fn modulate(x: &Tensor, scale: &Tensor, shift: &Tensor) -> Result<Tensor> {
    if rows::usable(x) {
        return rows::modulate(x, scale, shift, None);
    }
    x.broadcast_mul(&(scale + 1.0)?)?.broadcast_add(shift)
}

/// `rms_norm(x)·(1 + scale) + shift` (one pass on the CPU in f32).
fn norm_modulate(x: &Tensor, eps: f64, scale: &Tensor, shift: &Tensor) -> Result<Tensor> {
    if rows::usable(x) {
        return rows::modulate(x, scale, shift, Some(eps));
    }
    modulate(&rms_norm(x, None, eps)?, scale, shift)
}

/// `x + y·gate` (`·mask`, one value per sample), one pass on the CPU in f32.
fn gated_residual(x: &Tensor, y: &Tensor, gate: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    if rows::usable(x) && y.dtype() == x.dtype() {
        return rows::gated_residual(x, y, gate, mask);
    }
    let y = y.broadcast_mul(gate)?;
    match mask {
        Some(m) => x + y.broadcast_mul(m)?,
        None => x + y,
    }
}

impl StreamLayers {
    fn new(
        cfg: &StreamConfig,
        norm_eps: f64,
        vb: &VarBuilder,
        prefix: &str,
        linears: &LinearSource,
    ) -> Result<Self> {
        let p = |name: &str| vb.pp(format!("{prefix}{name}"));
        let attn = |name: &str, ctx: Option<usize>| {
            Attention::new(
                cfg.dim,
                ctx,
                cfg.heads,
                cfg.d_head,
                norm_eps,
                cfg.apply_gated_attention,
                p(name),
                linears,
            )
        };
        let k = adaln_embedding_coefficient(cfg.cross_attention_adaln);
        let table_name = |n: &str| format!("{prefix}{n}");
        Ok(Self {
            attn1: attn("attn1", None)?,
            attn2: {
                let a = attn("attn2", Some(cfg.context_dim))?;
                if cfg.text_kv_cache {
                    a.with_kv_cache()
                } else {
                    a
                }
            },
            ff: FeedForward::new(cfg.dim, cfg.dim, 4, cfg.ff_bias, p("ff"), linears)?,
            scale_shift_table: vb.get((k, cfg.dim), &table_name("scale_shift_table"))?,
            prompt_scale_shift_table: if cfg.cross_attention_adaln {
                Some(vb.get((2, cfg.dim), &table_name("prompt_scale_shift_table"))?)
            } else {
                None
            },
        })
    }
}

impl BasicAvTransformerBlock {
    pub fn new(
        idx: usize,
        video: Option<&StreamConfig>,
        audio: Option<&StreamConfig>,
        norm_eps: f64,
        vb: VarBuilder,
        linears: &LinearSource,
    ) -> Result<Self> {
        // The reference names the video layers without a prefix (`attn1`, `ff`) and the audio
        // ones with `audio_` (`audio_attn1`, `audio_ff`).
        let video_layers = video
            .map(|c| StreamLayers::new(c, norm_eps, &vb, "", linears))
            .transpose()?;
        let audio_layers = audio
            .map(|c| StreamLayers::new(c, norm_eps, &vb, "audio_", linears))
            .transpose()?;
        let cross = match (video, audio) {
            (Some(v), Some(a)) => Some(CrossLayers {
                audio_to_video_attn: Attention::new(
                    v.dim,
                    Some(a.dim),
                    a.heads,
                    a.d_head,
                    norm_eps,
                    v.apply_gated_attention,
                    vb.pp("audio_to_video_attn"),
                    linears,
                )?,
                video_to_audio_attn: Attention::new(
                    a.dim,
                    Some(v.dim),
                    a.heads,
                    a.d_head,
                    norm_eps,
                    a.apply_gated_attention,
                    vb.pp("video_to_audio_attn"),
                    linears,
                )?,
                table_video: vb.get((5, v.dim), "scale_shift_table_a2v_ca_video")?,
                table_audio: vb.get((5, a.dim), "scale_shift_table_a2v_ca_audio")?,
            }),
            _ => None,
        };
        let cross_attention_adaln = video.is_some_and(|c| c.cross_attention_adaln)
            || audio.is_some_and(|c| c.cross_attention_adaln);
        Ok(Self {
            idx,
            video: video_layers,
            audio: audio_layers,
            cross,
            cross_attention_adaln,
            norm_eps,
        })
    }

    /// The text K/V caches of this block's streams (none where the context follows the step).
    pub fn text_kv_caches(&self) -> impl Iterator<Item = &TextKvCache> {
        [&self.video, &self.audio]
            .into_iter()
            .flatten()
            .filter_map(|s| s.attn2.kv_cache())
    }

    /// Self-attention (with STG perturbation) then text cross-attention of one stream.
    fn self_and_text(
        &self,
        layers: &StreamLayers,
        args: &TransformerArgs,
        x: &Tensor,
        perturbations: &BatchedPerturbationConfig,
        kind: PerturbationType,
    ) -> Result<Tensor> {
        let [shift, scale, gate] = <[Tensor; 3]>::try_from(ada_values(
            &layers.scale_shift_table,
            &args.timesteps,
            0,
            3,
        )?)
        .expect("three rows");
        let norm_x = norm_modulate(x, self.norm_eps, &scale, &shift)?;
        let all = perturbations.all_in_batch(kind, self.idx);
        let none = !perturbations.any_in_batch(kind, self.idx);
        let mask = if !all && !none {
            Some(perturbations.mask_like(kind, self.idx, x)?)
        } else {
            None
        };
        let attn = layers.attn1.forward(
            &norm_x,
            AttentionInputs {
                mask: args.self_attention_mask.as_ref(),
                pe: Some(&args.positional_embeddings),
                perturbation_mask: mask.as_ref(),
                all_perturbed: all,
                ..Default::default()
            },
        )?;
        let x = gated_residual(x, &attn, &gate, None)?;
        if self.cross_attention_adaln {
            let [shift_q, scale_q, gate_q] = <[Tensor; 3]>::try_from(ada_values(
                &layers.scale_shift_table,
                &args.timesteps,
                6,
                9,
            )?)
            .expect("three rows");
            let prompt_table = layers.prompt_scale_shift_table.as_ref().ok_or_else(|| {
                candle_core::Error::Msg("cross-attention AdaLN without a prompt table".into())
            })?;
            // with the prompt MLP, its per-sample output on top of the table; without it
            // (KV-cacheable checkpoints) the table alone, the same for every step
            let [shift_kv, scale_kv] = match args.prompt_timestep.as_ref() {
                Some(prompt_ts) => {
                    <[Tensor; 2]>::try_from(ada_values(prompt_table, prompt_ts, 0, 2)?)
                        .expect("two rows")
                }
                None => {
                    let d = prompt_table.dim(1)?;
                    let row = |i| {
                        prompt_table
                            .narrow(0, i, 1)?
                            .to_dtype(args.context.dtype())?
                            .reshape((1, 1, d))
                    };
                    [row(0)?, row(1)?]
                }
            };
            let q_in = norm_modulate(&x, self.norm_eps, &scale_q, &shift_q)?;
            let ctx = modulate(&args.context, &scale_kv, &shift_kv)?;
            let text = layers.attn2.forward(
                &q_in,
                AttentionInputs {
                    context: Some(&ctx),
                    mask: args.context_mask.as_ref(),
                    context_key: args.context_key.as_ref(),
                    ..Default::default()
                },
            )?;
            gated_residual(&x, &text, &gate_q, None)
        } else {
            let text = layers.attn2.forward(
                &rms_norm(&x, None, self.norm_eps)?,
                AttentionInputs {
                    context: Some(&args.context),
                    mask: args.context_mask.as_ref(),
                    context_key: args.context_key.as_ref(),
                    ..Default::default()
                },
            )?;
            x + text
        }
    }

    fn feed_forward(
        &self,
        layers: &StreamLayers,
        args: &TransformerArgs,
        x: &Tensor,
    ) -> Result<Tensor> {
        let [shift, scale, gate] = <[Tensor; 3]>::try_from(ada_values(
            &layers.scale_shift_table,
            &args.timesteps,
            3,
            6,
        )?)
        .expect("three rows");
        let h = norm_modulate(x, self.norm_eps, &scale, &shift)?;
        gated_residual(x, &layers.ff.forward(&h)?, &gate, None)
    }

    /// Scale and shift rows `rows..rows+2` of an exchange table plus the gate (row 4).
    /// One cross-modal attention of the AV block: the query stream (its AV table, args, normed
    /// and current tokens) attends to the source stream, both modulated by their tables' rows
    /// from `rows`; the result is `current + out · gate · mask`.
    fn cross_modal(
        attn: &Attention,
        (q_table, q_args, q_norm, q_now): (&Tensor, &TransformerArgs, &Tensor, &Tensor),
        (kv_table, kv_args, kv_norm): (&Tensor, &TransformerArgs, &Tensor),
        rows: usize,
        mask: &Tensor,
    ) -> Result<Tensor> {
        let (sc_q, sh_q, gate) = Self::av_values(q_table, q_args, rows)?;
        let (sc_kv, sh_kv, _) = Self::av_values(kv_table, kv_args, rows)?;
        let q = modulate(q_norm, &sc_q, &sh_q)?;
        let kv = modulate(kv_norm, &sc_kv, &sh_kv)?;
        let out = attn.forward(
            &q,
            AttentionInputs {
                context: Some(&kv),
                pe: q_args.cross_positional_embeddings.as_ref(),
                k_pe: kv_args.cross_positional_embeddings.as_ref(),
                ..Default::default()
            },
        )?;
        gated_residual(q_now, &out, &gate, Some(mask))
    }

    fn av_values(
        table: &Tensor,
        args: &TransformerArgs,
        rows: usize,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let missing =
            || candle_core::Error::Msg("audio-video block without cross-modal timesteps".into());
        let ss_ts = args
            .cross_scale_shift_timestep
            .as_ref()
            .ok_or_else(missing)?;
        let gate_ts = args.cross_gate_timestep.as_ref().ok_or_else(missing)?;
        let ss = ada_values(&table.narrow(0, 0, 4)?, ss_ts, rows, rows + 2)?;
        let gate = ada_values(&table.narrow(0, 4, 1)?, gate_ts, 0, 1)?;
        Ok((ss[0].clone(), ss[1].clone(), gate[0].clone()))
    }

    /// Runs the block on the enabled streams.
    pub fn forward(
        &self,
        video: Option<&TransformerArgs>,
        audio: Option<&TransformerArgs>,
        perturbations: &BatchedPerturbationConfig,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let mut vx = video.map(|a| a.x.clone());
        let mut ax = audio.map(|a| a.x.clone());
        let nonempty = |x: &Option<Tensor>| x.as_ref().is_some_and(|t| t.elem_count() > 0);
        let run_v = video.is_some_and(|a| a.enabled) && nonempty(&vx) && self.video.is_some();
        let run_a = audio.is_some_and(|a| a.enabled) && nonempty(&ax) && self.audio.is_some();
        let run_a2v = run_v && nonempty(&ax);
        let run_v2a = run_a && nonempty(&vx);

        let v = run_v.then(|| {
            (
                self.video.as_ref().expect("checked"),
                video.expect("checked"),
            )
        });
        let a = run_a.then(|| {
            (
                self.audio.as_ref().expect("checked"),
                audio.expect("checked"),
            )
        });
        if let (Some((layers, args)), Some(x)) = (v, vx.as_ref()) {
            let kind = PerturbationType::SkipVideoSelfAttn;
            vx = Some(self.self_and_text(layers, args, x, perturbations, kind)?);
        }
        if let (Some((layers, args)), Some(x)) = (a, ax.as_ref()) {
            let kind = PerturbationType::SkipAudioSelfAttn;
            ax = Some(self.self_and_text(layers, args, x, perturbations, kind)?);
        }
        if let (true, Some(cross)) = (run_a2v || run_v2a, &self.cross) {
            let (va, aa) = (video.expect("checked"), audio.expect("checked"));
            let v_now = vx.clone().expect("checked");
            let a_now = ax.clone().expect("checked");
            let v_norm = rms_norm(&v_now, None, self.norm_eps)?;
            let a_norm = rms_norm(&a_now, None, self.norm_eps)?;
            let (a2v, v2a) = (
                PerturbationType::SkipA2vCrossAttn,
                PerturbationType::SkipV2aCrossAttn,
            );
            if run_a2v && !perturbations.all_in_batch(a2v, self.idx) {
                let mask = perturbations.mask_like(a2v, self.idx, &v_now)?;
                let query = (&cross.table_video, va, &v_norm, &v_now);
                let source = (&cross.table_audio, aa, &a_norm);
                vx = Some(Self::cross_modal(
                    &cross.audio_to_video_attn,
                    query,
                    source,
                    0,
                    &mask,
                )?);
            }
            if run_v2a && !perturbations.all_in_batch(v2a, self.idx) {
                let mask = perturbations.mask_like(v2a, self.idx, &a_now)?;
                let query = (&cross.table_audio, aa, &a_norm, &a_now);
                let source = (&cross.table_video, va, &v_norm);
                ax = Some(Self::cross_modal(
                    &cross.video_to_audio_attn,
                    query,
                    source,
                    2,
                    &mask,
                )?);
            }
        }
        if let (Some((layers, args)), Some(x)) = (v, vx.as_ref()) {
            vx = Some(self.feed_forward(layers, args, x)?);
        }
        if let (Some((layers, args)), Some(x)) = (a, ax.as_ref()) {
            ax = Some(self.feed_forward(layers, args, x)?);
        }
        Ok((vx, ax))
    }
}

//! `gemma_text_encoder` fixtures: every hidden state of the Gemma-3 decoder for a left-padded batch
//! (padded positions zeroed on both sides).

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use ltx_core::loader::StateDict;
use ltx_core::text_encoders::gemma::{gemma_llm_key_ops, Gemma3TextConfig, Gemma3TextModel};

use super::{Fixture, Outputs};
use crate::Result;

pub(super) fn run(fx: &Fixture, inputs: &Arc<StateDict>, device: &Device) -> Result<Outputs> {
    let cfg = Gemma3TextConfig::from_json(&fx.config)?;
    let sd = fx.weights(&gemma_llm_key_ops())?;
    let model = Gemma3TextModel::new(&cfg, sd.var_builder(DType::F32, device))?;
    sd.report_unused("gemma_text_encoder");
    let ids = inputs.raw_tensor("input_ids", device)?;
    let mask = inputs.raw_tensor("attention_mask", device)?;
    masked_hidden_states(&model.forward(&ids, &mask)?, &mask)
}

/// Every hidden state stacked `[B, T, D, layers + 1]`, padded positions zeroed (as the
/// generator stores them): the output of the Gemma text-model fixtures.
pub(super) fn masked_hidden_states(states: &[Tensor], mask: &Tensor) -> Result<Outputs> {
    let stacked = Tensor::stack(states, 3)?;
    let keep = mask.to_dtype(DType::F32)?.unsqueeze(2)?.unsqueeze(3)?;
    Ok(vec![(
        "hidden_states".into(),
        stacked.broadcast_mul(&keep)?,
    )])
}

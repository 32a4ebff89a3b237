//! `gemma4_text_encoder` fixtures: every hidden state of the Gemma-4 unified text model of LTX-2.5
//! for a left-padded batch (padded positions zeroed on both sides). The fixture's `config` is the
//! `gemma_config` header JSON; weights sit under the released Comfy-flat keys.

use std::sync::Arc;

use candle_core::{DType, Device};
use ltx_core::loader::StateDict;
use ltx_core::text_encoders::gemma::{gemma4_llm_key_ops, Gemma4TextConfig, Gemma4TextModel};

use super::{Fixture, Outputs};
use crate::Result;

const INPUTS: [&str; 2] = ["input_ids", "attention_mask"];

pub(super) fn run(fx: &Fixture, inputs: &Arc<StateDict>, device: &Device) -> Result<Outputs> {
    // the call takes no arguments
    fx.call_only(&[])?;
    let extra: Vec<String> = inputs
        .keys()
        .into_iter()
        .filter(|k| !INPUTS.contains(&k.as_str()))
        .collect();
    if !extra.is_empty() {
        return Err(fx.bad(format!("unknown inputs {extra:?}")));
    }
    let ops = gemma4_llm_key_ops();
    let foreign: Vec<String> = fx
        .files()
        .keys()
        .into_iter()
        .filter(|k| !k.starts_with("input.") && !k.starts_with("output."))
        .filter(|k| ops.apply_to_key(k).is_none())
        .collect();
    if !foreign.is_empty() {
        return Err(fx.bad(format!("tensors the text model does not read: {foreign:?}")));
    }
    let cfg = Gemma4TextConfig::from_gemma_config(&fx.config)?;
    let sd = fx.weights(&ops)?;
    let model = Gemma4TextModel::new(&cfg, sd.var_builder(DType::F32, device))?;
    let unused = sd.unused_keys();
    if !unused.is_empty() {
        return Err(fx.bad(format!("weights the text model does not use: {unused:?}")));
    }
    let ids = inputs.raw_tensor("input_ids", device)?;
    let mask = inputs.raw_tensor("attention_mask", device)?;
    super::gemma::masked_hidden_states(&model.forward(&ids, &mask)?, &mask)
}

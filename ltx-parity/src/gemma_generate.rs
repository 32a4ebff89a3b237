//! `gemma_generate` fixtures: greedy decoding with the Gemma decoder's key/value cache and tied
//! language-model head (the path prompt enhancement samples from), against `transformers`'
//! `generate`.

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
    sd.report_unused("gemma_generate");
    let prompt = inputs
        .raw_tensor("prompt_ids", device)?
        .to_dtype(DType::U32)?;
    let steps = fx.call_usize("new_tokens")?;
    let mut cache = model.new_cache();
    // the prompt in one pass, then one token at a time
    let mut hidden = model.forward_cached(&prompt.unsqueeze(0)?, &mut cache)?;
    let mut tokens = Vec::with_capacity(steps);
    let mut logits = Vec::with_capacity(steps);
    for _ in 0..steps {
        let last = hidden.narrow(1, hidden.dim(1)? - 1, 1)?;
        let l = model.logits(&last)?.flatten_all()?;
        let next = l.argmax(0)?.to_scalar::<u32>()?;
        logits.push(l);
        tokens.push(next);
        hidden = model.forward_cached(&Tensor::new(&[[next]], device)?, &mut cache)?;
    }
    let ids: Vec<f32> = tokens.iter().map(|&t| t as f32).collect();
    Ok(vec![
        ("tokens".into(), Tensor::new(ids.as_slice(), device)?),
        ("logits".into(), Tensor::stack(&logits, 0)?),
    ])
}

//! `gemma_tokenizer` fixtures: ids and masks of a few prompts, with the tokenizer.json from the
//! fixture's `tokenizer_json` metadata.

use candle_core::{Device, Tensor};
use ltx_core::text_encoders::gemma::LtxvGemmaTokenizer;

use super::{Fixture, Outputs};
use crate::Result;

pub(super) fn run(fx: &Fixture, device: &Device) -> Result<Outputs> {
    let json = fx
        .files()
        .metadata_entry("tokenizer_json")
        .ok_or_else(|| fx.bad("no `tokenizer_json` metadata"))?;
    let tok = LtxvGemmaTokenizer::from_bytes(json.as_bytes(), fx.call_usize("max_length")?)?;
    let (mut ids, mut masks) = (Vec::new(), Vec::new());
    let prompts = fx.call_array("prompts")?;
    for p in prompts {
        let t = tok.tokenize(
            p.as_str()
                .ok_or_else(|| fx.bad("prompts must be strings"))?,
        )?;
        ids.extend(t.input_ids.iter().map(|&v| v as i64));
        masks.extend(t.attention_mask.iter().map(|&v| v as i64));
    }
    let shape = (prompts.len(), tok.max_length());
    Ok(vec![
        ("input_ids".into(), Tensor::from_vec(ids, shape, device)?),
        (
            "attention_mask".into(),
            Tensor::from_vec(masks, shape, device)?,
        ),
    ])
}

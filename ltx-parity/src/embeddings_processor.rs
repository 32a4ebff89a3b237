//! `embeddings_processor` fixtures: the text path after Gemma (feature extractor and connectors)
//! on stand-in hidden states; `call.op` = `process` or `feature_extractor`.

use std::sync::Arc;

use candle_core::{DType, Device};
use ltx_core::loader::StateDict;
use ltx_core::text_encoders::gemma::{
    embeddings_processor_key_ops, EmbeddingsProcessor, GemmaDims, PaddingSide,
};

use super::{Fixture, Outputs};
use crate::Result;

pub(super) fn run(fx: &Fixture, inputs: &Arc<StateDict>, device: &Device) -> Result<Outputs> {
    let dims = GemmaDims {
        hidden_size: fx.call_usize("gemma_hidden_size")?,
        num_hidden_layers: fx.call_usize("gemma_num_hidden_layers")?,
    };
    let side = match fx.call_str("padding_side")? {
        "left" => PaddingSide::Left,
        "right" => PaddingSide::Right,
        other => return Err(fx.bad(format!("unknown padding side `{other}`"))),
    };
    let sd = fx.weights(&embeddings_processor_key_ops())?;
    let processor =
        EmbeddingsProcessor::new(&fx.config, dims, true, sd.var_builder(DType::F32, device))?;
    sd.report_unused("embeddings_processor");
    let hidden = fx.input(inputs, "hidden_states", device)?;
    let mask = inputs.raw_tensor("attention_mask", device)?;
    let (video_f, audio_f) = processor.feature_extractor.forward(&hidden, &mask, side)?;
    let mut out = vec![
        ("video_features".to_string(), video_f),
        ("audio_features".to_string(), audio_f),
    ];
    match fx.call_str("op")? {
        "feature_extractor" => {}
        "process" => {
            let res = processor.process_hidden_states(&hidden, &mask, side)?;
            out.push(("video_encoding".into(), res.video_encoding));
            if let Some(a) = res.audio_encoding {
                out.push(("audio_encoding".into(), a));
            }
            out.push(("attention_mask".into(), res.attention_mask));
        }
        other => return Err(fx.bad(format!("unknown embeddings_processor op `{other}`"))),
    }
    Ok(out)
}

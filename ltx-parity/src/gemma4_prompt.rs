//! `gemma4_tokenizer` and `gemma4_prompt_encoding` fixtures: the fixture file is itself a packed
//! text-encoder file (`gemma_config` metadata, `tokenizer_json`, `hf_asset__*` sidecars), read
//! through [`GemmaAssets::load`] / [`GemmaTextEncoder::from_assets`] as a real one is.
//! `gemma4_prompt_encoding` also holds the LM weights, the V2 projection and the connectors
//! (transformer keys, with the transformer `config` and `gemma_source_checkpoint` metadata): each
//! prompt is tokenized, encoded and run through the embeddings processor.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use ltx_core::loader::StateDict;
use ltx_core::text_encoders::gemma::assets::{HF_ASSET_TENSOR_PREFIX, TOKENIZER_JSON_TENSOR_KEY};
use ltx_core::text_encoders::gemma::{
    embeddings_processor_key_ops, EmbeddingsProcessor, Gemma3TextModel, Gemma4TextModel,
    GemmaAssets, GemmaLayers, GemmaTextConfig, GemmaTextEncoder, LtxvGemmaTokenizer, PaddingSide,
};

use super::{Fixture, Outputs};
use crate::Result;

/// The metadata these fixtures may hold: the generator's, and what a packed text encoder and a
/// transformer file carry.
const METADATA: [&str; 16] = [
    "component",
    "config",
    "call",
    "atol",
    "rtol",
    "case",
    "seed",
    "generator",
    "ltx_core_version",
    "reference_version",
    "torch_version",
    "weights_dtype",
    "f64_max_abs_err",
    "format",
    "gemma_config",
    "gemma_source_checkpoint",
];

/// Refuses inputs, unknown metadata, `call` keys other than `call_keys`, and tensors that are
/// neither outputs, assets nor accepted by `weight`.
fn check_fixture(
    fx: &Fixture,
    inputs: &Arc<StateDict>,
    call_keys: &[&str],
    weight: impl Fn(&str) -> bool,
) -> Result<()> {
    if !inputs.is_empty() {
        return Err(fx.bad(format!("takes no inputs, got {:?}", inputs.keys())));
    }
    let mut unknown: Vec<String> = fx
        .files()
        .metadata()
        .into_keys()
        .filter(|k| !METADATA.contains(&k.as_str()))
        .collect();
    unknown.sort();
    if !unknown.is_empty() {
        return Err(fx.bad(format!("unknown metadata {unknown:?}")));
    }
    fx.call_only(call_keys)?;
    let foreign: Vec<String> = fx
        .files()
        .keys()
        .into_iter()
        .filter(|k| {
            !k.starts_with("output.")
                && k != TOKENIZER_JSON_TENSOR_KEY
                && !k.starts_with(HF_ASSET_TENSOR_PREFIX)
                && !weight(k)
        })
        .collect();
    if !foreign.is_empty() {
        return Err(fx.bad(format!("tensors nothing reads: {foreign:?}")));
    }
    Ok(())
}

fn prompts(fx: &Fixture) -> Result<Vec<&str>> {
    fx.call_array("prompts")?
        .iter()
        .map(|p| p.as_str().ok_or_else(|| fx.bad("prompts must be strings")))
        .collect()
}

/// Rows of `[T]` ids or masks as one `[N, T]` int64 tensor.
fn rows(rows: &[Vec<u32>], device: &Device) -> Result<Tensor> {
    let t = rows.first().map_or(0, Vec::len);
    let flat: Vec<i64> = rows.iter().flatten().map(|&v| v as i64).collect();
    Ok(Tensor::from_vec(flat, (rows.len(), t), device)?)
}

pub(super) fn run_tokenizer(
    fx: &Fixture,
    inputs: &Arc<StateDict>,
    device: &Device,
) -> Result<Outputs> {
    check_fixture(fx, inputs, &["prompts", "max_length"], |_| false)?;
    let assets = GemmaAssets::load(&fx.path)?;
    let tok = LtxvGemmaTokenizer::from_assets(&assets, fx.call_usize("max_length")?)?;
    let (mut ids, mut masks) = (Vec::new(), Vec::new());
    for p in prompts(fx)? {
        let t = tok.tokenize(p)?;
        ids.push(t.input_ids);
        masks.push(t.attention_mask);
    }
    Ok(vec![
        ("input_ids".into(), rows(&ids, device)?),
        ("attention_mask".into(), rows(&masks, device)?),
    ])
}

pub(super) fn run_encoding(
    fx: &Fixture,
    inputs: &Arc<StateDict>,
    device: &Device,
) -> Result<Outputs> {
    let assets = GemmaAssets::load(&fx.path)?;
    let (lm_ops, ep_ops) = (
        assets.family().llm_key_ops(),
        embeddings_processor_key_ops(),
    );
    check_fixture(fx, inputs, &["prompts"], |k| {
        lm_ops.apply_to_key(k).is_some() || ep_ops.apply_to_key(k).is_some()
    })?;
    let expected = fx
        .files()
        .metadata_json("gemma_source_checkpoint")?
        .and_then(|v| v.get("gemma_version")?.as_str().map(String::from));
    if expected.as_deref() != assets.gemma_version() {
        return Err(fx.bad(format!(
            "gemma_source_checkpoint.gemma_version {expected:?} is not the text encoder's {:?}",
            assets.gemma_version()
        )));
    }
    // every LM weight is the decoder's (checked without reading), nothing else is
    let lm = fx.weights(&lm_ops)?;
    let vb = lm.checking_var_builder(DType::F32, device);
    match assets.text_config() {
        GemmaTextConfig::Gemma3(cfg) => drop(Gemma3TextModel::new(cfg, vb)?),
        GemmaTextConfig::Gemma4(cfg) => drop(Gemma4TextModel::new(cfg, vb)?),
    }
    let encoder =
        GemmaTextEncoder::from_assets(&assets, DType::F32, device, GemmaLayers::Resident)?;
    let ep = fx.weights(&ep_ops)?;
    let processor = EmbeddingsProcessor::new(
        &fx.config,
        assets.dims(),
        true,
        ep.var_builder(DType::F32, device),
    )?;
    let unused: Vec<String> = lm
        .unused_keys()
        .into_iter()
        .chain(ep.unused_keys())
        .collect();
    if !unused.is_empty() {
        return Err(fx.bad(format!("weights nothing uses: {unused:?}")));
    }
    let (mut ids, mut masks, mut video, mut audio, mut context_masks) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for p in prompts(fx)? {
        let t = encoder.tokenizer.tokenize(p)?;
        let (hidden, mask) = encoder.encode_stacked(p)?;
        let out = processor.process_hidden_states(&hidden, &mask, PaddingSide::Left)?;
        ids.push(t.input_ids);
        masks.push(t.attention_mask);
        video.push(out.video_encoding);
        audio.push(
            out.audio_encoding
                .ok_or_else(|| fx.bad("the processor made no audio encoding"))?,
        );
        context_masks.push(out.attention_mask);
    }
    Ok(vec![
        ("input_ids".into(), rows(&ids, device)?),
        ("input_attention_mask".into(), rows(&masks, device)?),
        ("video_encoding".into(), Tensor::cat(&video, 0)?),
        ("audio_encoding".into(), Tensor::cat(&audio, 0)?),
        ("attention_mask".into(), Tensor::cat(&context_masks, 0)?),
    ])
}

//! Prompt enhancement (the reference's `GemmaTextEncoder.enhance_t2v` and
//! `ltx_pipelines.utils.helpers.generate_enhanced_prompt`): the Gemma decoder, with its tied
//! language-model head, writes a detailed video prompt from the user's short one.
//!
//! The chat prompt is Gemma-3's turn format with the system prompt folded into the user turn; the
//! decoder runs with a key/value cache; tokens are sampled as `transformers`' `generate` does
//! (temperature, then top-k, then top-p from the Gemma root's `generation_config.json`) until an
//! end-of-turn token. The random draws come from this crate's own seeded generator, so the text
//! differs from the reference's for the same seed (torch's sampler cannot be reproduced); greedy
//! decoding (`temperature` 0) is deterministic and matches the reference token for token.
//!
//! Gemma-3 only: the Gemma-4 unified encoder of LTX-2.5 has no generation path (1.2.0 refuses to
//! enhance with it too), and the dense instruct Gemma-4 1.2.0 enhances with is not ported.

use std::path::Path;

use candle_core::{DType, Tensor};
use serde_json::Value;

use super::base_encoder::{GemmaModel, GemmaTextEncoder};
use crate::error::{Error, Result};
use crate::text_encoders::gemma::assets::GemmaError;
use crate::text_encoders::gemma::gemma3::Gemma3TextModel;

/// The instructions Gemma gets for text-to-video enhancement. Users can pass their own (e.g. the
/// reference's `gemma_t2v_system_prompt.txt`).
pub const DEFAULT_T2V_SYSTEM_PROMPT: &str = "\
You rewrite short requests into detailed prompts for a model that generates video together with \
its soundtrack. Reply with the prompt only: one paragraph, no title, no lists, no commentary.

Keep every element the request asks for (subjects, style, actions, camera work, sounds) and do not \
add people or objects it does not imply. Where the request is vague, choose concrete details: \
setting, time of day, light, colours, materials, textures, clothing, hair and facial expressions. \
Start with the visual style (\"Style: ...,\"), photorealistic and cinematic unless the request says \
otherwise. Describe what happens in order, in the present progressive, linking moments with words \
such as \"as\", \"then\" and \"while\"; if no action is requested, describe small natural \
movements. Say how the camera frames and moves. Describe the sound as it happens: ambience, \
effects, music, and, only when the request involves speech or singing, the exact words in quotes \
with the voice that says them. Stay within what a few seconds of video can show.";

/// How tokens are drawn.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingConfig {
    pub max_new_tokens: usize,
    /// 0: greedy decoding.
    pub temperature: f64,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    /// Generation stops after any of these.
    pub eos_token_ids: Vec<u32>,
}

impl SamplingConfig {
    /// The reference's enhancement settings (512 new tokens, sampling at temperature 0.7) on top
    /// of the Gemma root's `generation_config.json` (top-k / top-p / end tokens) when it has one;
    /// the end tokens fall back to the tokenizer's `<eos>` and `<end_of_turn>`.
    pub fn for_enhancement(encoder: &GemmaTextEncoder) -> Self {
        let mut cfg = Self {
            max_new_tokens: 512,
            temperature: 0.7,
            top_k: None,
            top_p: None,
            eos_token_ids: Vec::new(),
        };
        if let Some(gen) = &encoder.generation_config {
            cfg.top_k = gen
                .get("top_k")
                .and_then(Value::as_u64)
                .map(|k| k as usize)
                .filter(|&k| k > 0);
            cfg.top_p = gen
                .get("top_p")
                .and_then(Value::as_f64)
                .filter(|&p| p > 0.0 && p < 1.0);
            match gen.get("eos_token_id") {
                Some(Value::Number(n)) => cfg.eos_token_ids.extend(n.as_u64().map(|v| v as u32)),
                Some(Value::Array(a)) => cfg
                    .eos_token_ids
                    .extend(a.iter().filter_map(Value::as_u64).map(|v| v as u32)),
                _ => {}
            }
        }
        for t in ["<eos>", "<end_of_turn>"] {
            if let Some(id) = encoder.tokenizer.token_id(t) {
                if !cfg.eos_token_ids.contains(&id) {
                    cfg.eos_token_ids.push(id);
                }
            }
        }
        cfg
    }
}

/// A small seeded generator (SplitMix64) for the sampling draws.
#[derive(Clone, Debug)]
pub struct SampleRng(u64);

impl SampleRng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The next token from `logits` (`[vocab]` f32): the arg-max when `temperature` is 0, else a draw
/// after temperature, top-k and top-p filtering (the order of `transformers`' warpers; top-p keeps
/// the smallest set of most likely tokens whose mass reaches `p`, at least one).
pub fn sample_token(logits: &[f32], cfg: &SamplingConfig, rng: &mut SampleRng) -> Result<u32> {
    if logits.is_empty() {
        return Err(Error::InvalidInput("empty logits".into()));
    }
    let argmax = || {
        let mut best = 0;
        for (i, &v) in logits.iter().enumerate() {
            if v > logits[best] {
                best = i;
            }
        }
        best as u32
    };
    if cfg.temperature <= 0.0 {
        return Ok(argmax());
    }
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    if let Some(k) = cfg.top_k {
        order.truncate(k.max(1));
    }
    let scaled: Vec<f64> = order
        .iter()
        .map(|&i| logits[i] as f64 / cfg.temperature)
        .collect();
    let max = scaled[0];
    let mut probs: Vec<f64> = scaled.iter().map(|&v| (v - max).exp()).collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    if let Some(p) = cfg.top_p {
        let mut mass = 0.0;
        let mut keep = probs.len();
        for (i, &q) in probs.iter().enumerate() {
            mass += q;
            if mass >= p {
                keep = i + 1;
                break;
            }
        }
        order.truncate(keep);
        probs.truncate(keep);
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|q| *q /= total);
    }
    let u = rng.uniform();
    let mut acc = 0.0;
    for (i, &q) in probs.iter().enumerate() {
        acc += q;
        if u < acc {
            return Ok(order[i] as u32);
        }
    }
    Ok(*order.last().expect("at least one candidate") as u32)
}

/// Gemma-3's chat format for one system + user exchange, ready for the model's reply (the system
/// text opens the user turn, as Gemma-3's template does).
pub fn gemma_chat_prompt(system: &str, user: &str) -> String {
    format!(
        "<bos><start_of_turn>user\n{}\n\n{}<end_of_turn>\n<start_of_turn>model\n",
        system.trim(),
        user.trim()
    )
}

/// The reference's `clean_response`: typographic quotes, dashes and spaces made plain, and
/// anything before the first letter dropped.
pub fn clean_response(text: &str) -> String {
    let plain: String = text
        .chars()
        .map(|c| match c {
            '\u{2018}' | '\u{2019}' | '\u{2032}' => '\'',
            '\u{201c}' | '\u{201d}' => '"',
            '\u{2014}' | '\u{2013}' | '\u{2212}' => '-',
            '\u{a0}' => ' ',
            other => other,
        })
        .collect();
    match plain.find(|c: char| c.is_alphabetic()) {
        Some(i) => plain[i..].to_string(),
        None => plain,
    }
}

impl GemmaTextEncoder {
    /// The decoder that writes text: Gemma-3's (the only one with a generation path here).
    fn generative_model(&self) -> Result<&Gemma3TextModel> {
        match &self.model {
            GemmaModel::Gemma3(m) => Ok(m),
            GemmaModel::Gemma4(_) => Err(GemmaError::CannotGenerate {
                path: self.source().to_path_buf(),
            }
            .into()),
        }
    }

    /// Continues `prompt_ids` until an end token or `cfg.max_new_tokens`; returns the new tokens
    /// (the end token excluded).
    pub fn generate(
        &self,
        prompt_ids: &[u32],
        cfg: &SamplingConfig,
        rng: &mut SampleRng,
        mut on_token: impl FnMut(usize),
    ) -> Result<Vec<u32>> {
        if prompt_ids.is_empty() {
            return Err(Error::InvalidInput(
                "generation needs at least one prompt token".into(),
            ));
        }
        let model = self.generative_model()?;
        let device = self.device();
        let mut cache = model.new_cache();
        let ids = Tensor::new(prompt_ids, device)?.unsqueeze(0)?;
        let mut hidden = model.forward_cached(&ids, &mut cache)?;
        let mut out = Vec::new();
        while out.len() < cfg.max_new_tokens {
            let last = hidden.narrow(1, hidden.dim(1)? - 1, 1)?;
            let logits: Vec<f32> = model
                .logits(&last)?
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1()?;
            let next = sample_token(&logits, cfg, rng)?;
            if cfg.eos_token_ids.contains(&next) {
                break;
            }
            out.push(next);
            on_token(out.len());
            let ids = Tensor::new(&[next], device)?.unsqueeze(0)?;
            hidden = model.forward_cached(&ids, &mut cache)?;
        }
        Ok(out)
    }

    /// A detailed text-to-video prompt written by Gemma from `prompt` (`enhance_t2v` +
    /// `clean_response`), with `system_prompt` or [`DEFAULT_T2V_SYSTEM_PROMPT`].
    pub fn enhance_t2v(
        &self,
        prompt: &str,
        system_prompt: Option<&str>,
        seed: u64,
        on_token: impl FnMut(usize),
    ) -> Result<String> {
        self.generative_model()?;
        let chat = gemma_chat_prompt(
            system_prompt.unwrap_or(DEFAULT_T2V_SYSTEM_PROMPT),
            &format!("user prompt: {}", prompt.trim()),
        );
        let ids = self.tokenizer.encode_plain(&chat)?;
        let cfg = SamplingConfig::for_enhancement(self);
        let new = self.generate(&ids, &cfg, &mut SampleRng::new(seed), on_token)?;
        let text = self.tokenizer.decode(&new, true)?;
        let cleaned = clean_response(text.trim());
        if cleaned.trim().is_empty() {
            tracing::warn!("prompt enhancement produced no text; the original prompt is kept");
            return Ok(prompt.to_string());
        }
        Ok(cleaned)
    }
}

/// Reads a system prompt file (a typed error names it when unreadable).
pub fn read_system_prompt(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_and_filtered_sampling() -> Result<()> {
        let logits = [0.0f32, 3.0, 1.0, 2.9];
        let mut rng = SampleRng::new(1);
        let greedy = SamplingConfig {
            max_new_tokens: 1,
            temperature: 0.0,
            top_k: None,
            top_p: None,
            eos_token_ids: vec![],
        };
        assert_eq!(sample_token(&logits, &greedy, &mut rng)?, 1);
        // top-k 2 leaves tokens 1 and 3 only
        let k2 = SamplingConfig {
            temperature: 1.0,
            top_k: Some(2),
            ..greedy.clone()
        };
        for _ in 0..50 {
            let t = sample_token(&logits, &k2, &mut rng)?;
            assert!(t == 1 || t == 3, "{t}");
        }
        // a tiny top-p keeps the most likely token only
        let p = SamplingConfig {
            temperature: 1.0,
            top_p: Some(0.01),
            ..greedy
        };
        for _ in 0..20 {
            assert_eq!(sample_token(&logits, &p, &mut rng)?, 1);
        }
        Ok(())
    }

    #[test]
    fn chat_prompt_and_cleaning() {
        assert_eq!(
            gemma_chat_prompt(" sys ", "hi"),
            "<bos><start_of_turn>user\nsys\n\nhi<end_of_turn>\n<start_of_turn>model\n"
        );
        assert_eq!(
            clean_response("** \u{201c}Style\u{201d}: cinematic \u{2014} a dog"),
            "Style\": cinematic - a dog"
        );
    }
}

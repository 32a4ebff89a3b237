//! Port of `ltx_core/text_encoders/gemma/tokenizer.py` (`LTXGemmaTokenizer.tokenize_with_weights`)
//! on the `tokenizers` crate: the prompt, stripped, encoded with the tokenizer's special tokens and
//! truncated to `max_length`; a leading BOS prepended when the tokenizer did not add one (Gemma-3's
//! post-processor adds it, Gemma-4's does not) and the ids truncated again; then left-padded to
//! `max_length`.
//!
//! Built from [`GemmaAssets`] the way 1.2.0's `build_gemma_hf_tokenizer` builds the Hugging Face
//! tokenizer: the BOS, EOS and pad tokens and `truncation_side` from `tokenizer_config.json`, and,
//! when it sets `add_bos_token` / `add_eos_token`, the post-processor transformers then writes
//! (`[bos] $A [eos]`).

use std::path::Path;

use serde_json::Value;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams};

use super::assets::{GemmaAssets, GemmaError};
use crate::error::{Error, Result};

/// The reference's maximum prompt length for the Gemma encoder.
pub const DEFAULT_MAX_LENGTH: usize = 1024;
/// Gemma's BOS, when `tokenizer_config.json` names none.
const DEFAULT_BOS: &str = "<bos>";
/// Pad tokens tried, in order, when `tokenizer_config.json` names neither a pad nor an EOS token.
const PAD_FALLBACKS: [&str; 3] = ["<pad>", "<eos>", "</s>"];

/// Token ids and attention mask of one prompt, `max_length` long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenizedPrompt {
    pub input_ids: Vec<u32>,
    pub attention_mask: Vec<u32>,
}

/// `LTXGemmaTokenizer`.
pub struct LtxvGemmaTokenizer {
    /// Truncating to `max_length`, no padding.
    tokenizer: Tokenizer,
    /// The same tokenizer without truncation (chat prompts for generation).
    plain: Tokenizer,
    max_length: usize,
    bos_id: u32,
    pad_id: u32,
}

fn tok_err(what: String) -> impl FnOnce(tokenizers::Error) -> Error {
    move |e| Error::InvalidInput(format!("{what}: {e}"))
}

/// The settings of `tokenizer_config.json` the encode path reads.
#[derive(Default)]
struct TokenizerConfig {
    bos_token: Option<String>,
    eos_token: Option<String>,
    pad_token: Option<String>,
    add_bos_token: Option<bool>,
    add_eos_token: Option<bool>,
    truncate_left: bool,
}

impl TokenizerConfig {
    fn from_json(v: &Value) -> Self {
        // a special token is a string or an `AddedToken` object with its `content`
        let token = |k: &str| match v.get(k) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Object(o)) => o.get("content").and_then(Value::as_str).map(String::from),
            _ => None,
        };
        Self {
            bos_token: token("bos_token"),
            eos_token: token("eos_token"),
            pad_token: token("pad_token"),
            add_bos_token: v.get("add_bos_token").and_then(Value::as_bool),
            add_eos_token: v.get("add_eos_token").and_then(Value::as_bool),
            truncate_left: v.get("truncation_side").and_then(Value::as_str) == Some("left"),
        }
    }
}

impl LtxvGemmaTokenizer {
    /// From a `tokenizer.json` file alone (Gemma's special-token names).
    pub fn from_file(path: &Path, max_length: usize) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::build(&bytes, &TokenizerConfig::default(), max_length, path)
    }

    /// From the text of a `tokenizer.json` alone (Gemma's special-token names).
    pub fn from_bytes(bytes: &[u8], max_length: usize) -> Result<Self> {
        let source = Path::new("tokenizer.json");
        Self::build(bytes, &TokenizerConfig::default(), max_length, source)
    }

    /// From a text encoder's assets: `tokenizer.json` and, when present, `tokenizer_config.json`.
    pub fn from_assets(assets: &GemmaAssets, max_length: usize) -> Result<Self> {
        let cfg = assets
            .sidecar_json("tokenizer_config.json")?
            .map(|v| TokenizerConfig::from_json(&v))
            .unwrap_or_default();
        Self::build(assets.tokenizer_json(), &cfg, max_length, assets.source())
    }

    fn build(
        bytes: &[u8],
        cfg: &TokenizerConfig,
        max_length: usize,
        source: &Path,
    ) -> Result<Self> {
        if max_length == 0 {
            return Err(Error::InvalidInput(
                "tokenizer max length must be at least 1".into(),
            ));
        }
        let named = |e: Error| Error::InvalidInput(format!("`{}`: {e}", source.display()));
        let mut tokenizer = Tokenizer::from_bytes(bytes)
            .map_err(tok_err("not a valid tokenizer.json".into()))
            .map_err(named)?;
        let id = |role: &'static str, token: &str| {
            tokenizer
                .token_to_id(token)
                .map(|id| (token.to_string(), id))
                .ok_or_else(|| GemmaError::MissingSpecialToken {
                    path: source.to_path_buf(),
                    role,
                    token: token.to_string(),
                })
        };
        let bos = id("BOS", cfg.bos_token.as_deref().unwrap_or(DEFAULT_BOS))?;
        // the reference pads with the EOS token when the tokenizer has no pad token
        let pad = match (&cfg.pad_token, &cfg.eos_token) {
            (Some(p), _) => id("pad", p)?,
            (None, Some(e)) => id("EOS (the pad token's stand-in)", e)?,
            (None, None) => PAD_FALLBACKS
                .iter()
                .find_map(|t| id("pad", t).ok())
                .ok_or_else(|| GemmaError::MissingSpecialToken {
                    path: source.to_path_buf(),
                    role: "pad or EOS",
                    token: PAD_FALLBACKS.join("` / `"),
                })?,
        };
        if cfg.add_bos_token.is_some() || cfg.add_eos_token.is_some() {
            let eos = match (cfg.add_eos_token, &cfg.eos_token) {
                (Some(true), Some(e)) => Some(id("EOS", e)?),
                _ => None,
            };
            let bos = cfg.add_bos_token.unwrap_or(false).then_some(&bos);
            tokenizer.with_post_processor(Some(
                special_tokens_template(bos, eos.as_ref()).map_err(named)?,
            ));
        }
        let mut plain = tokenizer.clone();
        plain
            .with_truncation(None)
            .map_err(tok_err("truncation".into()))?;
        plain.with_padding(None);
        tokenizer.with_padding(None);
        let direction = match cfg.truncate_left {
            true => TruncationDirection::Left,
            false => TruncationDirection::Right,
        };
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length,
                direction,
                ..Default::default()
            }))
            .map_err(tok_err("truncation".into()))?;
        Ok(Self {
            tokenizer,
            plain,
            max_length,
            bos_id: bos.1,
            pad_id: pad.1,
        })
    }

    /// Token ids of `text` as written: no special tokens added, no padding or truncation (a chat
    /// prompt spells out its own `<bos>` and turn markers).
    pub fn encode_plain(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self
            .plain
            .encode_fast(text, false)
            .map_err(tok_err("tokenizing the prompt".into()))?
            .get_ids()
            .to_vec())
    }

    /// Text of `ids`, special tokens dropped when `skip_special`.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.plain
            .decode(ids, skip_special)
            .map_err(tok_err("decoding generated tokens".into()))
    }

    /// The id of a token of the vocabulary (special tokens included).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.plain.token_to_id(token)
    }

    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// The id every tokenized prompt starts with.
    pub fn bos_id(&self) -> u32 {
        self.bos_id
    }

    /// The id prompts are left-padded with.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Tokenizes one prompt (surrounding whitespace stripped): BOS first, at most `max_length`
    /// tokens (the end of a longer prompt is dropped, with a warning), left-padded. An empty
    /// prompt gives the BOS alone.
    pub fn tokenize(&self, text: &str) -> Result<TokenizedPrompt> {
        let enc = self
            .tokenizer
            .encode_fast(text.trim(), true)
            .map_err(tok_err("tokenizing the prompt".into()))?;
        let mut ids = enc.get_ids().to_vec();
        if ids.first() != Some(&self.bos_id) {
            ids.insert(0, self.bos_id);
        }
        let overflow: usize = enc.get_overflowing().iter().map(|o| o.len()).sum();
        if overflow > 0 || ids.len() > self.max_length {
            tracing::warn!(
                tokens = ids.len() + overflow,
                max_length = self.max_length,
                "prompt is longer than the text encoder's maximum; its end is cut off"
            );
        }
        ids.truncate(self.max_length);
        let pad = self.max_length - ids.len();
        let mut input_ids = vec![self.pad_id; pad];
        input_ids.extend(&ids);
        let mut attention_mask = vec![0; pad];
        attention_mask.resize(self.max_length, 1);
        Ok(TokenizedPrompt {
            input_ids,
            attention_mask,
        })
    }
}

/// transformers' `update_post_processor`: `[bos] $A [eos]` (and `$B` likewise for pairs).
fn special_tokens_template(
    bos: Option<&(String, u32)>,
    eos: Option<&(String, u32)>,
) -> Result<TemplateProcessing> {
    let piece =
        |t: Option<&(String, u32)>, type_id: u8| t.map(|(name, _)| format!("{name}:{type_id}"));
    let single: Vec<String> = [piece(bos, 0), Some("$A:0".into()), piece(eos, 0)]
        .into_iter()
        .flatten()
        .collect();
    let mut pair = single.clone();
    pair.extend(
        [piece(bos, 1), Some("$B:1".into()), piece(eos, 1)]
            .into_iter()
            .flatten(),
    );
    let invalid = |e: String| Error::InvalidInput(format!("special-token template: {e}"));
    TemplateProcessing::builder()
        .try_single(single.join(" "))
        .map_err(invalid)?
        .try_pair(pair.join(" "))
        .map_err(invalid)?
        .special_tokens(bos.into_iter().chain(eos).cloned().collect::<Vec<_>>())
        .build()
        .map_err(|e| invalid(e.to_string()))
}

/// Reads a prompt file: a typed error names the file when it is unreadable or not UTF-8.
pub fn read_prompt_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|e| {
        Error::InvalidInput(format!(
            "prompt file `{}` is not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_inputs_are_typed_errors() {
        assert!(LtxvGemmaTokenizer::from_bytes(b"{not json", 8).is_err());
        let dir = std::env::temp_dir().join(format!("ltx-prompt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("bad.txt");
        std::fs::write(&bad, [0x66, 0x6f, 0xff, 0x6f]).unwrap();
        let err = read_prompt_file(&bad).unwrap_err().to_string();
        assert!(
            err.contains("not UTF-8") && err.contains("offset 2"),
            "{err}"
        );
        assert!(matches!(
            read_prompt_file(&dir.join("missing.txt")),
            Err(Error::Io { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn with_config(
        bos_template: bool,
        cfg: serde_json::Value,
        max: usize,
    ) -> Result<LtxvGemmaTokenizer> {
        let json = crate::text_encoders::gemma::assets::test_files::tokenizer_json(bos_template);
        let cfg = TokenizerConfig::from_json(&cfg);
        LtxvGemmaTokenizer::build(json.as_bytes(), &cfg, max, Path::new("t.json"))
    }

    fn ids(t: &LtxvGemmaTokenizer, text: &str) -> (Vec<u32>, Vec<u32>) {
        let p = t.tokenize(text).unwrap();
        (p.input_ids, p.attention_mask)
    }

    #[test]
    fn bos_is_ensured_once_and_counts_against_max_length() -> Result<()> {
        let cfg = serde_json::json!({"bos_token": "<bos>", "pad_token": "<pad>"});
        // Gemma-4's shape: the tokenizer adds nothing, the BOS is prepended
        let g4 = with_config(false, cfg.clone(), 4)?;
        assert_eq!(ids(&g4, " a cat "), (vec![0, 2, 4, 5], vec![0, 1, 1, 1]));
        assert_eq!(ids(&g4, ""), (vec![0, 0, 0, 2], vec![0, 0, 0, 1]));
        // truncated to 4, then the prepended BOS pushes the last token out
        assert_eq!(
            ids(&g4, "a cat walks a cat"),
            (vec![2, 4, 5, 6], vec![1; 4])
        );
        // Gemma-3's shape: the post-processor's BOS is kept, not doubled
        let g3 = with_config(true, cfg, 4)?;
        assert_eq!(ids(&g3, "a cat walks a cat").0, vec![2, 4, 5, 6]);
        assert_eq!(ids(&g3, "cat").0, vec![0, 0, 2, 5]);
        Ok(())
    }

    #[test]
    fn special_tokens_follow_the_tokenizer_config() -> Result<()> {
        // no pad token: the EOS pads (the reference's fallback)
        let t = with_config(false, serde_json::json!({"eos_token": "<eos>"}), 3)?;
        assert_eq!((t.bos_id(), t.pad_id()), (2, 1));
        // add_eos_token rewrites the post-processor: the EOS survives truncation, the BOS the
        // reference prepends then pushes it out again
        let t = with_config(
            false,
            serde_json::json!({"eos_token": "<eos>", "add_eos_token": true}),
            3,
        )?;
        assert_eq!(ids(&t, "a").0, vec![2, 4, 1]);
        assert_eq!(ids(&t, "a cat walks").0, vec![2, 4, 5]);
        let t = with_config(false, serde_json::json!({"truncation_side": "left"}), 3)?;
        // left truncation drops the start, the prepended BOS then the end
        assert_eq!(ids(&t, "a cat walks a").0, vec![2, 5, 6]);
        match with_config(false, serde_json::json!({"bos_token": "<s>"}), 3) {
            Err(Error::Gemma(GemmaError::MissingSpecialToken { role, token, .. })) => {
                assert_eq!((role, token.as_str()), ("BOS", "<s>"))
            }
            other => panic!("expected a missing-BOS error, got {:?}", other.err()),
        }
        Ok(())
    }
}

//! Port of `ltx_core/text_encoders/gemma/tokenizer.py` on the `tokenizers` crate: the prompt,
//! stripped, encoded with the tokenizer's special tokens (Gemma's BOS), truncated to
//! `max_length` and left-padded to it.

use std::path::Path;

use tokenizers::{PaddingDirection, PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::error::{Error, Result};

/// The reference's maximum prompt length for the Gemma encoder.
pub const DEFAULT_MAX_LENGTH: usize = 1024;

/// Token ids and attention mask of one prompt, `max_length` long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenizedPrompt {
    pub input_ids: Vec<u32>,
    pub attention_mask: Vec<u32>,
}

/// `LTXVGemmaTokenizer`.
pub struct LtxvGemmaTokenizer {
    tokenizer: Tokenizer,
    /// The same tokenizer without padding or truncation (chat prompts for generation).
    plain: Tokenizer,
    max_length: usize,
}

fn tok_err(what: String) -> impl FnOnce(tokenizers::Error) -> Error {
    move |e| Error::InvalidInput(format!("{what}: {e}"))
}

impl LtxvGemmaTokenizer {
    /// From a `tokenizer.json` file.
    pub fn from_file(path: &Path, max_length: usize) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes, max_length)
            .map_err(|e| Error::InvalidInput(format!("`{}`: {e}", path.display())))
    }

    /// From the text of a `tokenizer.json`.
    pub fn from_bytes(bytes: &[u8], max_length: usize) -> Result<Self> {
        if max_length == 0 {
            return Err(Error::InvalidInput(
                "tokenizer max length must be at least 1".into(),
            ));
        }
        let mut tokenizer =
            Tokenizer::from_bytes(bytes).map_err(tok_err("not a valid tokenizer.json".into()))?;
        let mut plain = tokenizer.clone();
        plain.with_padding(None);
        plain
            .with_truncation(None)
            .map_err(tok_err("truncation".into()))?;
        // pad with `<pad>`, or the EOS token when the tokenizer has no pad token (as the reference)
        let pad = ["<pad>", "<eos>", "</s>"]
            .iter()
            .find_map(|t| tokenizer.token_to_id(t).map(|id| (t.to_string(), id)))
            .ok_or_else(|| {
                Error::InvalidInput("the tokenizer has neither a pad nor an EOS token".into())
            })?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::Fixed(max_length),
            direction: PaddingDirection::Left,
            pad_id: pad.1,
            pad_token: pad.0,
            ..Default::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length,
                ..Default::default()
            }))
            .map_err(tok_err("truncation".into()))?;
        Ok(Self {
            tokenizer,
            plain,
            max_length,
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

    /// Tokenizes one prompt (surrounding whitespace stripped). A prompt longer than `max_length`
    /// tokens is truncated (its end is dropped), with a warning; an empty prompt gives only the
    /// special tokens.
    pub fn tokenize(&self, text: &str) -> Result<TokenizedPrompt> {
        let text = text.trim();
        let full = self
            .tokenizer
            .encode_fast(text, true)
            .map_err(tok_err("tokenizing the prompt".into()))?;
        let used = full
            .get_attention_mask()
            .iter()
            .filter(|&&m| m != 0)
            .count();
        let untruncated = used
            + full
                .get_overflowing()
                .iter()
                .map(|o| o.len())
                .sum::<usize>();
        if untruncated > self.max_length {
            tracing::warn!(
                tokens = untruncated,
                max_length = self.max_length,
                "prompt is longer than the text encoder's maximum; its end is cut off"
            );
        }
        Ok(TokenizedPrompt {
            input_ids: full.get_ids().to_vec(),
            attention_mask: full.get_attention_mask().to_vec(),
        })
    }
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
}

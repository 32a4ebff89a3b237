//! Port of `ltx_core/loader/sd_ops.py`: state-dict key filtering and renaming, as data.

/// An immutable list of key operations. A key is kept when it matches any `(prefix, suffix)`
/// matcher; every replacement whose content occurs in the key is then applied in order (each
/// replacing all occurrences), exactly like the reference's `SDOps.apply_to_key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SDOps {
    pub name: &'static str,
    matchers: Vec<(String, String)>,
    replacements: Vec<(String, String)>,
    /// Prefixes removed once, after the replacements (the reference's `removeprefix` key ops).
    strip_once: Vec<String>,
}

impl SDOps {
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            matchers: Vec::new(),
            replacements: Vec::new(),
            strip_once: Vec::new(),
        }
    }

    /// Keeps keys starting with `prefix` and ending with `suffix`.
    pub fn with_matching(mut self, prefix: &str, suffix: &str) -> Self {
        self.matchers.push((prefix.to_string(), suffix.to_string()));
        self
    }

    /// Replaces `content` with `replacement` wherever it occurs in a kept key.
    pub fn with_replacement(mut self, content: &str, replacement: &str) -> Self {
        self.replacements
            .push((content.to_string(), replacement.to_string()));
        self
    }

    /// Removes a leading `prefix` once (not every occurrence) after the replacements, like the
    /// reference's `key.removeprefix(prefix)` key-value operations.
    pub fn with_prefix_strip(mut self, prefix: &str) -> Self {
        self.strip_once.push(prefix.to_string());
        self
    }

    /// The module-side name of checkpoint key `key`, or `None` when the key is filtered out.
    pub fn apply_to_key(&self, key: &str) -> Option<String> {
        let kept = self
            .matchers
            .iter()
            .any(|(p, s)| key.starts_with(p.as_str()) && key.ends_with(s.as_str()));
        if !kept {
            return None;
        }
        let mut key = key.to_string();
        for (content, replacement) in &self.replacements {
            if key.contains(content.as_str()) {
                key = key.replace(content.as_str(), replacement);
            }
        }
        for prefix in &self.strip_once {
            if let Some(rest) = key.strip_prefix(prefix.as_str()) {
                key = rest.to_string();
            }
        }
        Some(key)
    }

    /// Keeps every key unchanged.
    pub fn identity() -> Self {
        Self::new("IDENTITY").with_matching("", "")
    }
}

/// LoRA files in ComfyUI layout: strip `diffusion_model.`.
pub fn ltxv_lora_comfy_renaming_map() -> SDOps {
    SDOps::new("LTXV_LORA_COMFY_PREFIX_MAP")
        .with_matching("", "")
        .with_replacement("diffusion_model.", "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_renames_like_the_reference() {
        let ops = SDOps::new("T")
            .with_matching("vae.decoder.", "")
            .with_matching("vae.per_channel_statistics.", "")
            .with_replacement("vae.decoder.", "")
            .with_replacement("vae.per_channel_statistics.", "per_channel_statistics.");
        assert_eq!(
            ops.apply_to_key("vae.decoder.conv_in.conv.weight")
                .as_deref(),
            Some("conv_in.conv.weight")
        );
        assert_eq!(
            ops.apply_to_key("vae.per_channel_statistics.mean-of-means")
                .as_deref(),
            Some("per_channel_statistics.mean-of-means")
        );
        assert_eq!(ops.apply_to_key("vae.encoder.conv_in.conv.weight"), None);
        assert_eq!(ops.apply_to_key("model.diffusion_model.x"), None);
    }

    #[test]
    fn suffix_matching_and_all_occurrences() {
        let ops = SDOps::new("T")
            .with_matching("", ".weight")
            .with_replacement("a.", "b.");
        assert_eq!(ops.apply_to_key("x.bias"), None);
        assert_eq!(
            ops.apply_to_key("a.a.weight").as_deref(),
            Some("b.b.weight")
        );
        let lora = ltxv_lora_comfy_renaming_map();
        assert_eq!(
            lora.apply_to_key("diffusion_model.blocks.0.lora_A.weight")
                .as_deref(),
            Some("blocks.0.lora_A.weight")
        );
    }
}

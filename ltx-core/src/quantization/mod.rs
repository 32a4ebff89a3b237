//! Port of `ltx_core/quantization/` (the `fp8-cast` policy), plus GGUF block types: how a
//! transformer's block linears are held in memory.
//!
//! A linear's weights stay in the form they are stored in — F8E4M3 (with an optional per-tensor
//! `weight_scale`), a GGUF block type (Q8_0, Q4_K, …) — and are widened per forward
//! ([`Linear`]). A [`Quantization`] narrows a wide checkpoint at load: `fp8-cast` on exactly the
//! reference's allow-list ([`is_fp8_cast_key`]), a GGUF type on the same linears (as the
//! community GGUF files and `ltx quantize` do). Everything else stays in the compute dtype.

pub mod fp8;
pub mod gguf_writer;
pub mod linear;

use candle_core::quantized::GgmlDType;

pub use linear::{Linear, LinearSource};

/// How a wide (bf16 / f32) checkpoint's block linears are narrowed at load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Quantization {
    /// Weights as stored (fp8 and GGUF files stay narrow all the same).
    #[default]
    None,
    /// The reference's `fp8-cast`: the allow-listed weights and biases cast to F8E4M3
    /// (round to nearest even), upcast to the input's dtype in every forward.
    Fp8Cast,
    /// The allow-listed weights quantized to a GGUF block type (biases stay wide).
    Gguf(GgmlDType),
}

/// The GGUF block types a checkpoint can be quantized to, by their command-line names.
pub const GGUF_TYPES: [(&str, GgmlDType); 8] = [
    ("q8_0", GgmlDType::Q8_0),
    ("q6_k", GgmlDType::Q6K),
    ("q5_k", GgmlDType::Q5K),
    ("q4_k", GgmlDType::Q4K),
    ("q3_k", GgmlDType::Q3K),
    ("q5_0", GgmlDType::Q5_0),
    ("q4_0", GgmlDType::Q4_0),
    ("q2_k", GgmlDType::Q2K),
];

impl Quantization {
    /// The command-line name (`none`, `fp8-cast`, `q8_0`, `q4_k`, …).
    pub fn name(&self) -> String {
        match self {
            Self::None => "none".into(),
            Self::Fp8Cast => "fp8-cast".into(),
            Self::Gguf(t) => gguf_type_name(*t),
        }
    }

    /// Parses a command-line name; the error lists the accepted ones.
    pub fn parse(name: &str) -> crate::Result<Self> {
        match name {
            "none" => Ok(Self::None),
            "fp8-cast" => Ok(Self::Fp8Cast),
            _ => GGUF_TYPES
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, t)| Self::Gguf(*t))
                .ok_or_else(|| {
                    let names: Vec<&str> = GGUF_TYPES.iter().map(|(n, _)| *n).collect();
                    crate::Error::InvalidInput(format!(
                        "unknown quantization `{name}` (expected none, fp8-cast or one of {})",
                        names.join(", ")
                    ))
                }),
        }
    }

    /// Every accepted name, for help texts.
    pub fn names() -> Vec<String> {
        let mut v = vec!["none".to_string(), "fp8-cast".to_string()];
        v.extend(GGUF_TYPES.iter().map(|(n, _)| n.to_string()));
        v
    }

    /// Whether this quantization narrows the stored tensor `key` (a module-side key) at load.
    pub fn narrows(&self, key: &str) -> bool {
        match self {
            Self::None => false,
            Self::Fp8Cast => is_fp8_cast_key(key),
            Self::Gguf(_) => key.ends_with(".weight") && is_fp8_cast_key(key),
        }
    }
}

/// A GGUF block type's lower-case name as llama.cpp spells it (`q8_0`, `q4_k`, `f16`, …).
pub fn gguf_type_name(t: GgmlDType) -> String {
    match t {
        GgmlDType::F32 => "f32",
        GgmlDType::F16 => "f16",
        GgmlDType::BF16 => "bf16",
        GgmlDType::Q4_0 => "q4_0",
        GgmlDType::Q4_1 => "q4_1",
        GgmlDType::Q5_0 => "q5_0",
        GgmlDType::Q5_1 => "q5_1",
        GgmlDType::Q8_0 => "q8_0",
        GgmlDType::Q8_1 => "q8_1",
        GgmlDType::Q2K => "q2_k",
        GgmlDType::Q3K => "q3_k",
        GgmlDType::Q4K => "q4_k",
        GgmlDType::Q5K => "q5_k",
        GgmlDType::Q6K => "q6_k",
        GgmlDType::Q8K => "q8_k",
    }
    .to_string()
}

/// Module suffixes of the linears the reference's `fp8-cast` narrows: the attention projections
/// (with the leading dot, so only `…attnN.to_q` and the cross-modal attentions match) and both
/// feed-forwards (dotless, so `ff.` and `audio_ff.` match).
const FP8_CAST_LINEAR_SUFFIXES: [&str; 6] = [
    ".to_q",
    ".to_k",
    ".to_v",
    ".to_out.0",
    "ff.net.0.proj",
    "ff.net.2",
];

/// Whether a module-side key (`transformer_blocks.3.attn1.to_q.weight`, `….bias`) is one the
/// reference's `fp8-cast` narrows (its `TRANSFORMER_LINEAR_DOWNCAST_MAP`).
pub fn is_fp8_cast_key(key: &str) -> bool {
    let Some(module) = key
        .strip_suffix(".weight")
        .or_else(|| key.strip_suffix(".bias"))
    else {
        return false;
    };
    key.starts_with("transformer_blocks.")
        && FP8_CAST_LINEAR_SUFFIXES.iter().any(|s| module.ends_with(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_is_the_references() {
        for k in [
            "transformer_blocks.0.attn1.to_q.weight",
            "transformer_blocks.0.attn2.to_out.0.bias",
            "transformer_blocks.7.audio_attn1.to_v.weight",
            "transformer_blocks.1.audio_to_video_attn.to_k.weight",
            "transformer_blocks.1.ff.net.0.proj.weight",
            "transformer_blocks.1.audio_ff.net.2.bias",
        ] {
            assert!(is_fp8_cast_key(k), "{k}");
        }
        for k in [
            "transformer_blocks.0.attn1.to_gate_logits.weight",
            "transformer_blocks.0.attn1.q_norm.weight",
            "transformer_blocks.0.scale_shift_table",
            "proj_out.weight",
            "adaln_single.linear.weight",
            "transformer_blocks.0.attn1.to_q.weight_scale",
        ] {
            assert!(!is_fp8_cast_key(k), "{k}");
        }
        let q = Quantization::Gguf(GgmlDType::Q8_0);
        assert!(q.narrows("transformer_blocks.0.ff.net.2.weight"));
        assert!(!q.narrows("transformer_blocks.0.ff.net.2.bias"));
        assert!(Quantization::Fp8Cast.narrows("transformer_blocks.0.ff.net.2.bias"));
    }

    #[test]
    fn names_round_trip() {
        for n in Quantization::names() {
            assert_eq!(Quantization::parse(&n).unwrap().name(), n);
        }
        assert!(Quantization::parse("q4").is_err());
    }
}

//! `ltx info CHECKPOINT`: what a checkpoint holds (detected model version, components and their
//! parameter counts, the `config` metadata), read from the safetensors header only.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use ltx_core::loader::{SDOps, SafetensorsFiles};
use ltx_core::quantization::gguf_type_name;
use ltx_pipelines::utils::constants::{model_family, parse_model_version};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A checkpoint (.safetensors, several shards of one model may be given; or a .gguf file).
    #[arg(required = true)]
    checkpoint: Vec<PathBuf>,
    /// Print the whole `config` metadata.
    #[arg(long)]
    config: bool,
}

/// The component a checkpoint key belongs to (the key prefixes of the released files).
fn component(key: &str) -> &'static str {
    const MAP: [(&str, &str); 13] = [
        (
            "model.diffusion_model.video_embeddings_connector.",
            "text connectors",
        ),
        (
            "model.diffusion_model.audio_embeddings_connector.",
            "text connectors",
        ),
        ("model.diffusion_model.", "transformer"),
        ("text_embedding_projection.", "text feature extractor"),
        ("vae.encoder.", "video VAE encoder"),
        ("vae.decoder.", "video VAE decoder"),
        ("vae.", "video VAE statistics"),
        ("audio_vae.encoder.", "audio VAE encoder"),
        ("audio_vae.decoder.", "audio VAE decoder"),
        ("audio_vae.", "audio VAE statistics"),
        ("duration_head.", "duration head"),
        // split (per-component) files keep their keys bare
        ("encoder.", "video VAE encoder"),
        ("decoder.", "video VAE decoder"),
    ];
    if key.contains("lora_A") || key.contains("lora_B") || key.contains("lora_down") {
        return "LoRA";
    }
    if [
        "model.layers.",
        "model.embed_tokens.",
        "model.norm.",
        "model.language_model.",
    ]
    .iter()
    .any(|p| key.starts_with(p))
        || key.starts_with("vision_model.")
    {
        return "Gemma";
    }
    if key == "tokenizer_json" || key.starts_with("hf_asset__") {
        return "tokenizer and configs";
    }
    if key.starts_with("vocoder.") {
        return "vocoder";
    }
    MAP.iter()
        .find(|(p, _)| key.starts_with(p))
        .map_or("other", |(_, c)| c)
}

/// `Some(name)` when `config` is a latent upsampler's (flat, with `mid_channels`).
fn upsampler_kind(config: &serde_json::Value) -> Option<&'static str> {
    config.get("mid_channels")?;
    let on = |k: &str| config.get(k).and_then(|v| v.as_bool()) == Some(true);
    Some(match (on("spatial_upsample"), on("temporal_upsample")) {
        (true, true) => "spatio-temporal upsampler",
        (false, true) => "temporal upsampler",
        _ => "spatial upsampler",
    })
}

fn human(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2} B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.1} M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1} k", n as f64 / 1e3),
        n => n.to_string(),
    }
}

pub fn run(args: &Args) -> Result<()> {
    let files = SafetensorsFiles::open(&args.checkpoint)?;
    let config = files.config()?;
    // an upsampler's config is flat (no sections) and its keys bare
    let upsampler = upsampler_kind(&config);
    let version = files.metadata_entry("model_version").unwrap_or("");
    let family = match model_family(&parse_model_version(version)) {
        Some(f) => f,
        None if upsampler.is_some() => "latent upsampler (no model_version)",
        None if files.metadata_entry("config").is_some() => "LTX-2 (no later model_version)",
        None if files.metadata_entry("gemma_config").is_some() => "Gemma text encoder",
        None => "unknown (no `config` metadata)",
    };
    println!(
        "model: {family}{}",
        if version.is_empty() {
            String::new()
        } else {
            format!(" (model_version {version})")
        }
    );
    let sd = files.state_dict(&SDOps::identity())?;
    let mut parts: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
    for key in sd.keys() {
        let n: u64 = sd
            .shape_of(&key)
            .unwrap_or_default()
            .iter()
            .map(|&d| d as u64)
            .product();
        let part = match component(&key) {
            "other" => upsampler.unwrap_or("other"),
            c => c,
        };
        let e = parts.entry(part).or_default();
        e.0 += 1;
        e.1 += n;
    }
    let total: u64 = parts.values().map(|p| p.1).sum();
    println!("{:<24} {:>8} {:>12}", "component", "tensors", "parameters");
    for (name, (count, params)) in &parts {
        println!("{name:<24} {count:>8} {:>12}", human(*params));
    }
    println!("{:<24} {:>8} {:>12}", "total", sd.len(), human(total));
    if let Some(obj) = config.as_object() {
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        println!("config sections: {}", keys.join(", "));
        if let Some(t) = obj
            .get("transformer")
            .filter(|t| t.get("num_layers").is_some())
        {
            let get = |k: &str| {
                t.get(k)
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into())
            };
            println!(
                "transformer: {} layers, {} heads x {}, audio {} heads x {}, caption {}",
                get("num_layers"),
                get("num_attention_heads"),
                get("attention_head_dim"),
                get("audio_num_attention_heads"),
                get("audio_attention_head_dim"),
                get("caption_channels"),
            );
        }
        let bwe = obj.get("vocoder").is_some_and(|v| v.get("bwe").is_some());
        if obj.contains_key("vocoder") {
            println!(
                "vocoder: {}",
                if bwe {
                    "BigVGAN v2 + bandwidth extension (48 kHz)"
                } else {
                    "HiFi-GAN (24 kHz)"
                }
            );
        }
    }
    for (key, what) in [
        ("gemma_source_checkpoint", "text encoder it pairs with"),
        ("lora_rank", "LoRA rank"),
    ] {
        if let Some(v) = files.metadata_entry(key) {
            println!("{what}: {v}");
        }
    }
    if let Some(g) = files.metadata_entry("gemma_config") {
        let g: serde_json::Value = serde_json::from_str(g).unwrap_or_default();
        println!(
            "text encoder: {} ({})",
            g.get("model_type").and_then(|v| v.as_str()).unwrap_or("?"),
            g.get("gemma_version")
                .and_then(|v| v.as_str())
                .unwrap_or("no gemma_version")
        );
    }
    if let Some(gguf) = files.gguf() {
        print_gguf(gguf);
    }
    if args.config {
        println!("{}", serde_json::to_string_pretty(&config)?);
    }
    Ok(())
}

/// The GGUF file's tensor types and where its config came from.
fn print_gguf(gguf: &ltx_core::loader::gguf::GgufFile) {
    let mut types: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    for name in gguf.tensor_names() {
        if let Some((shape, t)) = gguf.describe(&name) {
            let e = types.entry(gguf_type_name(t)).or_default();
            e.0 += 1;
            e.1 += shape.iter().map(|&d| d as u64).product::<u64>();
        }
    }
    let list: Vec<String> = types
        .iter()
        .map(|(t, (n, p))| format!("{t}: {n} tensors, {}", human(*p)))
        .collect();
    println!("GGUF tensor types: {}", list.join("; "));
    let meta = gguf.metadata();
    if !meta.contains_key("config") {
        println!(
            "config: none in the file; the released layout was inferred from the tensor names"
        );
    }
    if let Some(q) = meta.get("ltx.quantization") {
        println!("written by `ltx quantize --type {q}`");
    }
}

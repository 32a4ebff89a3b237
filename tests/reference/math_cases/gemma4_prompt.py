"""LTX-2.5's prompt path from a packed Gemma-4 text-encoder file, the way ltx-core 1.2.0 runs it.

`gemma4_tokenizer`: a BPE tokenizer in Gemma-4's shape (`<pad>` 0, `<eos>` 1, `<bos>` 2, no BOS-adding
post-processor), packed as 1.2.0 packs a text encoder (`tokenizer_json` U8 tensor, `hf_asset__tokenizer_config.json`,
`hf_asset__processor_config.json`, the `gemma_config` metadata) and tokenized by `LTXGemmaTokenizer` on
`build_gemma_hf_tokenizer(GemmaAssets.from_single_file(...))`: strip, truncate, prepend the BOS the tokenizer does not
add (re-truncating), left-pad.

`gemma4_prompt_encoding`: a tiny Gemma-4 unified root (the `gemma4_text_encoder` model, HF keys) packed by 1.2.0's
`build_text_encoder_tensors_from_gemma_root` with a V2 `text_embedding_projection`, plus tiny connectors under the
transformer file's keys and the transformer `config` / `gemma_source_checkpoint` metadata, all in one file (the
fixture). The reference builds the text encoder and the embeddings processor from that file with the pipelines'
builders (`get_gemma_ops`, `GemmaTextEncoderConfigurator`, `EmbeddingsProcessorConfigurator`,
`EMBEDDINGS_PROCESSOR_KEY_OPS`) and runs `PromptEncoder`'s steps: `LTXGemmaTextEncoder.encode(prompts)` (1024
tokens) then `process_hidden_states` per prompt. Only the processor load op is dropped: building
`Gemma4UnifiedProcessor` needs torchvision, and the processor only serves prompt enhancement."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from fixture_common import Case, CaseContext, FixtureResult

from .gemma4 import TINY_IDS, TINY_TEXT, _checkpoint_weights, _generator_module, gemma_config

# the projection and connector weights (the LM takes stream 0, STREAM_WEIGHTS; the prompts are fixed text)
STREAM_PROJECTION = 3
GEMMA_VERSION = "gemma4-12b-ltx-v1"

TOKENIZER_CONFIG = {
    "tokenizer_class": "GemmaTokenizer",
    "bos_token": "<bos>",
    "eos_token": "<eos>",
    "pad_token": "<pad>",
    "unk_token": "<unk>",
    "mask_token": "<mask>",
    "padding_side": "left",
    "model_max_length": 1000000000000000019884624838656,
}
PROCESSOR_CONFIG = {"processor_class": "Gemma4UnifiedProcessor"}
CHAT_TEMPLATE = "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}"

TOKENIZER_PROMPTS = [
    "A cat walks across a sunlit kitchen floor.",
    "  leading and trailing spaces are stripped   ",
    "",
    "Ünïcödé, emoji 🎬 and punctuation!?",
    "a long prompt " * 12,
]
ENCODING_PROMPTS = [
    "A cat walks across a sunlit kitchen floor.",
    "The camera pans slowly over a misty mountain lake at dawn, birds sing in the background",
]

# the transformer keys the projection and connectors read: video contexts 2 x 8 wide, audio 2 x 4
CONNECTORS = {
    "attention_head_dim": 8,
    "audio_attention_head_dim": 4,
    "connector_num_attention_heads": 2,
    "connector_attention_head_dim": 8,
    "connector_num_layers": 1,
    "connector_positional_embedding_max_pos": [4096],
    "connector_apply_gated_attention": True,
    "audio_connector_num_attention_heads": 2,
    "audio_connector_attention_head_dim": 4,
}


def gemma4_tokenizer_json() -> str:
    """A BPE tokenizer trained here in Gemma-4's shape: the special tokens first, no post-processor."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=200, special_tokens=["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"])
    corpus = [
        "A cat walks across a sunlit kitchen floor.",
        "The camera pans slowly over a misty mountain lake at dawn.",
        "a woman speaks softly, birds sing in the background",
        "long prompts are truncated to the maximum length",
    ] * 20
    tok.train_from_iterator(corpus, trainer)
    if tok.post_processor is not None:
        raise RuntimeError("the Gemma-4 stand-in must not add special tokens itself")
    return tok.to_str()


def _asset_tensors(tokenizer_json: str, sidecars: dict[str, str]) -> dict[str, torch.Tensor]:
    """The tokenizer and sidecars as 1.2.0 packs them."""
    from ltx_core.text_encoders.gemma.gemma_assets import (
        HF_ASSET_TENSOR_PREFIX,
        TOKENIZER_JSON_TENSOR_KEY,
        _bytes_to_uint8_tensor,
    )

    out = {TOKENIZER_JSON_TENSOR_KEY: _bytes_to_uint8_tensor(tokenizer_json.encode())}
    for name, text in sidecars.items():
        out[HF_ASSET_TENSOR_PREFIX + name] = _bytes_to_uint8_tensor(text.encode())
    return out


def tokenizer_case(ctx: CaseContext, max_length: int) -> FixtureResult:
    del ctx  # nothing is random: the same file for every seed
    from safetensors.torch import save_file
    from ltx_core.text_encoders.gemma import GemmaAssets, build_gemma_hf_tokenizer
    from ltx_core.text_encoders.gemma.gemma_assets import GEMMA_CONFIG_METADATA_KEY
    from ltx_core.text_encoders.gemma.tokenizer import LTXGemmaTokenizer, PaddingSide

    sidecars = {
        "tokenizer_config.json": json.dumps(TOKENIZER_CONFIG),
        "processor_config.json": json.dumps(PROCESSOR_CONFIG),
    }
    tensors = _asset_tensors(gemma4_tokenizer_json(), sidecars)
    config = json.dumps(gemma_config(TINY_TEXT, TINY_IDS))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "te.safetensors"
        save_file(tensors, str(path), metadata={"format": "pt", GEMMA_CONFIG_METADATA_KEY: config})
        hf = build_gemma_hf_tokenizer(GemmaAssets.from_single_file(path), max_length)
        ref = LTXGemmaTokenizer(hf, max_length, padding_side=PaddingSide.LEFT)
        pairs = [ref.tokenize_with_weights(p)["gemma"] for p in TOKENIZER_PROMPTS]
    out = dict(tensors)
    out["output.input_ids"] = torch.tensor([[int(t) for t, _ in row] for row in pairs], dtype=torch.int64)
    out["output.attention_mask"] = torch.tensor([[int(w) for _, w in row] for row in pairs], dtype=torch.int64)
    call = {"prompts": TOKENIZER_PROMPTS, "max_length": max_length}
    return FixtureResult("gemma4_tokenizer", {}, call, "0", "0", out, {GEMMA_CONFIG_METADATA_KEY: config})


def _transformer_config() -> dict:
    return _generator_module().tiny_ltx25_transformer(**CONNECTORS)


def _processor_weights(ctx: CaseContext, root: Path, transformer: dict, metadata: dict) -> dict[str, torch.Tensor]:
    """Seeded V2 projection and connector weights (det_init) under the checkpoint keys, F16."""
    from ltx_core.text_encoders.gemma import EmbeddingsProcessorConfigurator

    gen_mod = _generator_module()
    configurator = EmbeddingsProcessorConfigurator.with_gemma_model_path(str(root))
    processor = configurator.from_metadata({**metadata, "config": transformer})
    with torch.no_grad():
        state = gen_mod.det_init(processor, ctx.generator(STREAM_PROJECTION))
    return {gen_mod.embeddings_processor_checkpoint_key(k): v.half().contiguous() for k, v in sorted(state.items())}


def _write_root(root: Path, ctx: CaseContext, tokenizer_json: str) -> None:
    """A Gemma-4 unified root in Hugging Face layout: config, tokenizer, sidecars, `model.language_model.*` weights."""
    from safetensors.torch import save_file

    config = gemma_config(TINY_TEXT, TINY_IDS)
    (root / "config.json").write_text(json.dumps(config))
    (root / "tokenizer.json").write_text(tokenizer_json)
    (root / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG))
    (root / "processor_config.json").write_text(json.dumps(PROCESSOR_CONFIG))
    (root / "chat_template.jinja").write_text(CHAT_TEMPLATE)
    weights = _checkpoint_weights(ctx, config, torch.float16, comfy_flat=False)
    save_file(weights, str(root / "model.safetensors"))


def _reference_models(path: Path):
    """The text encoder and the embeddings processor, built from the packed file as `PromptEncoder` builds them."""
    from ltx_core.loader.single_gpu_model_builder import SingleGPUModelBuilder as Builder
    from ltx_core.text_encoders.gemma import (
        EMBEDDINGS_PROCESSOR_KEY_OPS,
        EmbeddingsProcessorConfigurator,
        GemmaTextEncoderConfigurator,
        get_gemma_ops,
        resolve_gemma_weight_paths,
    )

    sd_ops, module_ops = get_gemma_ops(str(path))
    module_ops = tuple(op for op in module_ops if op.name != "ProcessorLoad")
    cpu = torch.device("cpu")
    encoder = Builder(
        model_path=resolve_gemma_weight_paths(str(path)),
        model_class_configurator=GemmaTextEncoderConfigurator.with_gemma_model_path(str(path)),
        model_sd_ops=sd_ops,
        module_ops=module_ops,
    ).build(device=cpu, dtype=torch.float32)
    processor = Builder(
        model_path=(str(path),),
        model_class_configurator=EmbeddingsProcessorConfigurator.with_gemma_model_path(str(path)),
        model_sd_ops=EMBEDDINGS_PROCESSOR_KEY_OPS,
    ).build(device=cpu, dtype=torch.float32)
    for name, module in (("text encoder", encoder), ("embeddings processor", processor)):
        leftover = [n for n, t in list(module.named_parameters()) + list(module.named_buffers()) if t.is_meta]
        if leftover:
            raise RuntimeError(f"{name}: uninitialised tensors after load: {leftover}")
    return encoder.eval(), processor.eval()


def _encode(encoder, processor, prompts: list[str]) -> dict[str, torch.Tensor]:
    with torch.inference_mode():
        raw = encoder.encode(prompts)
        outs = [processor.process_hidden_states(hs, mask) for hs, mask in raw]
    return {
        "video_encoding": torch.cat([o.video_encoding for o in outs]),
        "audio_encoding": torch.cat([o.audio_encoding for o in outs]),
        "attention_mask": torch.cat([o.attention_mask for o in outs]).to(torch.int64),
        "input_attention_mask": torch.cat([mask for _, mask in raw]).to(torch.int64),
    }


def encoding_case(ctx: CaseContext) -> FixtureResult:
    from safetensors.torch import save_file
    from ltx_core.text_encoders.gemma.gemma_assets import (
        GEMMA_CONFIG_METADATA_KEY,
        build_text_encoder_tensors_from_gemma_root,
    )

    gen_mod = _generator_module()
    transformer = _transformer_config()
    source = {"gemma_version": GEMMA_VERSION}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "gemma4-root"
        root.mkdir()
        _write_root(root, ctx, gemma4_tokenizer_json())
        weights = _processor_weights(ctx, root, transformer, {"gemma_source_checkpoint": source})
        projection = {k: v for k, v in weights.items() if k.startswith("text_embedding_projection.")}
        tensors, metadata = build_text_encoder_tensors_from_gemma_root(
            str(root), projection, gemma_version=GEMMA_VERSION
        )
        tensors.update(weights)
        tensors = gen_mod.checkpoint_roundtrip(tensors)
        path = Path(tmp) / "te.safetensors"
        metadata = {**metadata, "config": json.dumps(transformer), "gemma_source_checkpoint": json.dumps(source)}
        save_file(tensors, str(path), metadata=metadata)
        encoder, processor = _reference_models(path)
        outputs = _encode(encoder, processor, ENCODING_PROMPTS)
        outputs["input_ids"] = torch.tensor(
            [[int(t) for t, _ in encoder.tokenizer.tokenize_with_weights(p)["gemma"]] for p in ENCODING_PROMPTS],
            dtype=torch.int64,
        )
        extra = {
            "weights_dtype": "float16",
            GEMMA_CONFIG_METADATA_KEY: metadata[GEMMA_CONFIG_METADATA_KEY],
            "gemma_source_checkpoint": metadata["gemma_source_checkpoint"],
        }
        f64_err = None
        if ctx.f64_check:
            outputs64 = _encode(encoder.double(), processor.double(), ENCODING_PROMPTS)
            f64_err = max(
                float((outputs[k].double() - outputs64[k]).abs().max()) for k in ("video_encoding", "audio_encoding")
            )
            for k in ("attention_mask", "input_attention_mask"):
                if not torch.equal(outputs[k], outputs64[k]):
                    raise RuntimeError(f"the float64 run changes {k}")
            extra["f64_max_abs_err"] = f"{f64_err:.3e}"
    atol, rtol = gen_mod._tolerances(ctx, f64_err)
    out = dict(tensors)
    out.update({f"output.{k}": v.float() if v.is_floating_point() else v for k, v in outputs.items()})
    return FixtureResult("gemma4_prompt_encoding", transformer, {"prompts": ENCODING_PROMPTS}, atol, rtol, out, extra)


CASES: list[Case] = [
    Case(
        "gemma4_tokenizer",
        "gemma4_tokenizer",
        140,
        "LTXGemmaTokenizer on a packed Gemma-4-shaped tokenizer (no BOS post-processor): BOS prepended, strip, empty "
        "prompt, unicode, a prompt longer than 16 tokens truncated with the prepended BOS, left padding to 16",
        lambda ctx: tokenizer_case(ctx, 16),
    ),
    Case(
        "gemma4_prompt_encoding",
        "gemma4_prompt_encoding",
        141,
        "packed tiny Gemma-4 unified text encoder (tokenizer, sidecars, V2 projection) + gated connectors: 2 prompts "
        "tokenized to 1024, encoded, projected and connected as PromptEncoder does",
        encoding_case,
    ),
]

"""`gemma4_text_encoder` fixtures: the Gemma-4 unified text model of LTX-2.5 (transformers'
`Gemma4UnifiedForConditionalGeneration`, `model_type gemma4_unified`) built and loaded the way ltx-core 1.2.0 builds it
(`GemmaTextEncoderConfigurator.from_metadata`: `AutoModelForImageTextToText.from_config` on the meta device inside an
`LTXGemmaTextEncoder`; weights through `_build_gemma4_unified_llm_key_ops(comfy_flat=True)`, strict; buffers from
`_create_and_populate_gemma4_unified`) and run the way `LTXGemmaTextEncoder.encode` runs it:
`model.model(input_ids, attention_mask, output_hidden_states=True)`, on a left-padded batch of 2.

Weights: the language model only, drawn by `det_init` (norm weights 1 + 0.1 N, linear and embedding weights
U(+-1/sqrt(fan_in))) with `layer_scalar` U(0.5, 1.5), stored under the released Comfy-flat keys (`model.layers.N.*`,
`model.embed_tokens.weight`, `model.norm.weight`, made by the reference's `_flatten_gemma4_unified_keys_for_comfy`);
F16 for the tiny case, BF16 at full size. The vision and audio embedders are absent (`vision_config` /
`audio_config` null): the text path never reads them. `config` is the `gemma_config` JSON as the released header
stores it (top level with `text_config`). Inputs `input_ids`, `attention_mask` (int64); output `hidden_states`
`[B, T, hidden, layers + 1]`, padded positions zeroed (a padded query attends to nothing)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from types import ModuleType, SimpleNamespace

import torch

from fixture_common import STREAM_INPUT, STREAM_WEIGHTS, Case, CaseContext, FixtureResult

COMPONENT = "gemma4_text_encoder"

ROPE = {
    "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
    "full_attention": {"rope_type": "proportional", "rope_theta": 1_000_000.0, "partial_rotary_factor": 0.25},
}

# shared by both cases: the released text settings that are not widths
TEXT_COMMON = {
    "model_type": "gemma4_unified_text",
    "attention_bias": False,
    "attention_k_eq_v": True,
    "enable_moe_block": False,
    "final_logit_softcapping": 30.0,
    "hidden_activation": "gelu_pytorch_tanh",
    "hidden_size_per_layer_input": 0,
    "num_kv_shared_layers": 0,
    "use_double_wide_mlp": False,
    "use_bidirectional_attention": "vision",
    "rms_norm_eps": 1e-6,
    "rope_parameters": ROPE,
    "pad_token_id": 0,
    "bos_token_id": 2,
    "eos_token_id": 1,
    "tie_word_embeddings": True,
}

TINY_TEXT = {
    **TEXT_COMMON,
    "vocab_size": 300,
    "vocab_size_per_layer_input": 300,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 8,
    "global_head_dim": 16,
    "num_global_key_value_heads": 1,
    "sliding_window": 4,
    "max_position_embeddings": 128,
    # transformers forces the last layer to full attention
    "layer_types": ["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
}

FULL_TEXT = {
    # the released widths with 2 of its 48 layers (released layers 4 and 5: sliding, full) and a 4096-token vocabulary
    **TEXT_COMMON,
    "vocab_size": 4096,
    "vocab_size_per_layer_input": 4096,
    "hidden_size": 3840,
    "intermediate_size": 15360,
    "num_hidden_layers": 2,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 256,
    "global_head_dim": 512,
    "num_global_key_value_heads": 1,
    "sliding_window": 1024,
    "max_position_embeddings": 262144,
    "layer_types": ["sliding_attention", "full_attention"],
}

# the released top-level token ids; the tiny case moves the three placeholder ids into its vocabulary so the
# placeholder -> pad replacement of `Gemma4UnifiedModel.forward` is exercised
RELEASED_IDS = {
    "image_token_id": 258880,
    "audio_token_id": 258881,
    "video_token_id": 258884,
    "boi_token_id": 255999,
    "eoi_token_id": 258882,
    "boa_token_id": 256000,
    "eoa_token_index": 258883,
}
TINY_IDS = {**RELEASED_IDS, "image_token_id": 297, "audio_token_id": 298, "video_token_id": 299}


def _generator_module() -> ModuleType:
    """generate.py (which imports this module) holds det_init, checkpoint_roundtrip and the tolerance rounding."""
    main = sys.modules.get("__main__")
    if main is not None and hasattr(main, "det_init") and hasattr(main, "checkpoint_roundtrip"):
        return main
    import generate

    return generate


def gemma_config(text: dict, ids: dict) -> dict:
    """The `gemma_config` header JSON: top level with `text_config` (no vision / audio embedders)."""
    return {
        "model_type": "gemma4_unified",
        "architectures": ["Gemma4UnifiedForConditionalGeneration"],
        "gemma_version": "gemma4-12b-ltx-v1",
        "tie_word_embeddings": True,
        "eos_token_id": [1, 106],
        **ids,
        "text_config": dict(text),
        "vision_config": None,
        "audio_config": None,
    }


def _hf_config(root: dict):
    from ltx_core.text_encoders.gemma import build_gemma_hf_config

    return build_gemma_hf_config(SimpleNamespace(config_dict=root, source="tiny Gemma-4 root"))


def _checkpoint_weights(
    ctx: CaseContext, root: dict, dtype: torch.dtype, comfy_flat: bool = True
) -> dict[str, torch.Tensor]:
    """Seeded language-model weights under the released (Comfy-flat) keys, or with `comfy_flat=False` the Hugging
    Face keys (`model.language_model.*`) a Gemma root stores, rounded to `dtype`."""
    from transformers import AutoModelForImageTextToText
    from ltx_core.text_encoders.gemma.gemma_assets import _flatten_gemma4_unified_keys_for_comfy

    gen_mod = _generator_module()
    model = AutoModelForImageTextToText.from_config(_hf_config(root)).float().eval()
    lm = model.model.language_model
    gen = ctx.generator(STREAM_WEIGHTS)
    with torch.no_grad():
        state = gen_mod.det_init(lm, gen)
    out = {}
    for name, value in sorted(state.items()):
        if name.endswith("layer_scalar"):
            value = 0.5 + torch.rand(value.shape, generator=gen)
        key = "model.language_model." + name
        if comfy_flat:
            key = _flatten_gemma4_unified_keys_for_comfy(key)
        out[key] = value.to(dtype).contiguous().clone()
    return out


def _reference_encoder(root: dict, tensors: dict[str, torch.Tensor]):
    """The reference text encoder rebuilt from checkpoint-keyed tensors the way ltx-core 1.2.0 loads a
    `gemma4_unified` file: layout probe, meta-device model, key ops, strict load, buffer population."""
    from safetensors.torch import save_file
    from transformers import AutoModelForImageTextToText
    from ltx_core.text_encoders.gemma.encoders.base_encoder import LTXGemmaTextEncoder
    from ltx_core.text_encoders.gemma.encoders.encoder_configurator import (
        _build_gemma4_unified_llm_key_ops,
        _create_and_populate_gemma4_unified,
        _gemma4_unified_is_comfy_flat,
    )

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
        if not _gemma4_unified_is_comfy_flat(str(path)):
            raise RuntimeError("the reference does not read these keys as the Comfy-flat layout")
    ops = _build_gemma4_unified_llm_key_ops(comfy_flat=True)
    state = {}
    for key, value in tensors.items():
        new_key = ops.apply_to_key(key)
        if new_key is None:
            raise RuntimeError(f"the reference key ops drop {key}")
        for kv in ops.apply_to_key_value(new_key, value):
            state[kv.new_key] = kv.new_value.to(torch.float32).clone()
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(_hf_config(root))
    encoder = LTXGemmaTextEncoder(model=model)
    encoder.load_state_dict(state, strict=True, assign=True)
    encoder = _create_and_populate_gemma4_unified(encoder)
    leftover = [n for n, t in list(encoder.named_parameters()) + list(encoder.named_buffers()) if t.is_meta]
    if leftover:
        raise RuntimeError(f"uninitialised tensors after load: {leftover}")
    return encoder.float().eval()


def _hidden_states(encoder, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        out = encoder.model.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    states = torch.stack(out.hidden_states, dim=-1)
    return states * mask[:, :, None, None].to(states.dtype)


def gemma4_case(ctx: CaseContext, pads: tuple[int, int], t: int, full: bool) -> FixtureResult:
    gen_mod = _generator_module()
    text, ids_cfg = (FULL_TEXT, RELEASED_IDS) if full else (TINY_TEXT, TINY_IDS)
    root = gemma_config(text, ids_cfg)
    dtype = torch.bfloat16 if full else torch.float16
    weights = gen_mod.checkpoint_roundtrip(_checkpoint_weights(ctx, root, dtype))
    encoder = _reference_encoder(root, weights)

    gen = ctx.generator(STREAM_INPUT)
    ids = torch.randint(3, min(text["vocab_size"], 297), (2, t), generator=gen)
    mask = torch.ones(2, t, dtype=torch.int64)
    for row, pad in enumerate(pads):
        mask[row, :pad] = 0
        ids[row, :pad] = 0
    if not full:
        # one of each multimodal placeholder in the unpadded row: the reference embeds them as padding tokens
        ids[1, 3], ids[1, 7], ids[1, 11] = TINY_IDS["image_token_id"], TINY_IDS["video_token_id"], TINY_IDS[
            "audio_token_id"
        ]
    states = _hidden_states(encoder, ids, mask)

    extra = {"weights_dtype": "bfloat16" if full else "float16"}
    f64_err = None
    if ctx.f64_check:
        states64 = _hidden_states(encoder.double(), ids, mask)
        f64_err = float((states.double() - states64).abs().max())
        extra["f64_max_abs_err"] = f"{f64_err:.3e}"
    atol, rtol = gen_mod._tolerances(ctx, f64_err)
    tensors = dict(weights)
    tensors.update({"input.input_ids": ids, "input.attention_mask": mask, "output.hidden_states": states.float()})
    return FixtureResult(COMPONENT, root, {}, atol, rtol, tensors, extra)


CASES: list[Case] = [
    Case(
        "gemma4_text_encoder",
        COMPONENT,
        136,
        "tiny Gemma-4 unified: 4 layers (sliding, full, sliding, full; window 4), 4 heads of 8 / 2 KV heads on sliding "
        "layers, 1 global KV head of 16 with k_eq_v on full layers, proportional RoPE (1/4 rotated), layer_scalar "
        "U(0.5, 1.5); 2 x 16 tokens, the first row left-padded by 5, image/video/audio placeholders in the second",
        lambda ctx: gemma4_case(ctx, (5, 0), 16, full=False),
    ),
    Case(
        "gemma4_text_encoder_full",
        COMPONENT,
        137,
        "Gemma-4 12B unified widths (3840 wide, 16 heads of 256 / 8 KV sliding, 16 of 512 / 1 KV k_eq_v full, MLP "
        "15360) with 2 layers (sliding, full) and a 4096-token vocabulary, bf16 weights; 2 x 24 tokens, the first row "
        "left-padded by 7",
        lambda ctx: gemma4_case(ctx, (7, 0), 24, full=True),
        full_size=True,
    ),
]

"""`conditioning` fixtures: the reference conditioning items applied in sequence to a patchified initial
video latent state, and the mask helpers called directly.

call (op "items"): {"target": [B,C,F,H,W], "fps", "dtype", "causal_fix", "items": [item...], "clear": bool}
with item = {"type": "latent_index"|"keyframe"|"reference"|"wrapper", "latent": input name, ...}; a wrapper
has "inner" (an item) and "attention_mask" (a number or an input name). Inputs `input.initial` and the
items' latents (stored in the item's dtype); outputs the final state's fields (+ `cleared_*`)."""

from __future__ import annotations

import torch

from fixture_common import STREAM_INPUT, Case, CaseContext, FixtureResult

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def _build_item(spec: dict, inputs: dict[str, torch.Tensor]):  # noqa: ANN202
    from ltx_core.conditioning import (
        ConditioningItemAttentionStrengthWrapper,
        VideoConditionByKeyframeIndex,
        VideoConditionByLatentIndex,
        VideoConditionByReferenceLatent,
    )

    kind = spec["type"]
    if kind == "latent_index":
        return VideoConditionByLatentIndex(inputs[spec["latent"]], spec["strength"], spec["latent_idx"])
    if kind == "keyframe":
        return VideoConditionByKeyframeIndex(inputs[spec["latent"]], spec["frame_idx"], spec["strength"])
    if kind == "reference":
        # keywords: 1.2.0 inserted temporal_scale_factor before strength
        return VideoConditionByReferenceLatent(
            inputs[spec["latent"]], downscale_factor=spec["downscale_factor"], strength=spec["strength"]
        )
    if kind == "wrapper":
        mask = spec["attention_mask"]
        mask = inputs[mask] if isinstance(mask, str) else mask
        return ConditioningItemAttentionStrengthWrapper(_build_item(spec["inner"], inputs), attention_mask=mask)
    raise ValueError(kind)


def items_case(ctx: CaseContext, call: dict, latents: dict[str, tuple[list[int], str]]) -> FixtureResult:
    from ltx_core.components.patchifiers import VideoLatentPatchifier
    from ltx_core.tools import VideoLatentTools
    from ltx_core.types import VideoLatentShape

    gen = ctx.generator(STREAM_INPUT)
    dtype = DTYPES[call["dtype"]]
    inputs: dict[str, torch.Tensor] = {"initial": torch.randn(call["target"], generator=gen).to(dtype)}
    for name, (shape, dt) in latents.items():
        if dt == "uniform":  # an attention-strength tensor
            inputs[name] = torch.rand(shape, generator=gen)
        else:
            inputs[name] = torch.randn(shape, generator=gen).to(DTYPES[dt])
    tools = VideoLatentTools(
        VideoLatentPatchifier(patch_size=1),
        VideoLatentShape(*call["target"]),
        call["fps"],
        causal_fix=call["causal_fix"],
    )
    state = tools.create_initial_state(torch.device("cpu"), dtype, inputs["initial"])
    for spec in call["items"]:
        state = _build_item(spec, inputs).apply_to(state, tools)
    tensors = {f"input.{k}": v for k, v in inputs.items()}
    fields = ("latent", "clean_latent", "denoise_mask", "positions", "attention_mask")
    for field in fields:
        value = getattr(state, field)
        if value is not None:
            tensors[f"output.{field}"] = value
    if call.get("clear"):
        cleared = tools.clear_conditioning(state)
        for field in fields:
            value = getattr(cleared, field)
            if value is not None:
                tensors[f"output.cleared_{field}"] = value
    tensors = {k: v.clone() for k, v in tensors.items()}
    return FixtureResult("conditioning", {}, {"op": "items", **call}, "0", "0", tensors, {})


def mask_utils_case(ctx: CaseContext) -> FixtureResult:
    from ltx_core.conditioning.mask_utils import build_attention_mask, resolve_cross_mask

    gen = ctx.generator(STREAM_INPUT)
    cpu = torch.device("cpu")
    m, b = 5, 2
    inputs = {
        "mask_1d": torch.rand(m, generator=gen),
        "mask_2d": torch.rand(b, m, generator=gen),
        "mask_2d_b1": torch.rand(1, m, generator=gen),
        "existing": torch.rand(b, 7, 7, generator=gen),
    }
    outputs = {
        "cross_scalar": resolve_cross_mask(0.25, m, b, cpu, torch.float32),
        "cross_0d": resolve_cross_mask(torch.tensor(0.75), m, b, cpu, torch.float32),
        "cross_1d": resolve_cross_mask(inputs["mask_1d"], m, b, cpu, torch.float32),
        "cross_2d": resolve_cross_mask(inputs["mask_2d"], m, b, cpu, torch.float32),
        "cross_2d_b1": resolve_cross_mask(inputs["mask_2d_b1"], m, b, cpu, torch.bfloat16),
    }
    outputs["built_fresh"] = build_attention_mask(None, 4, m, 7, outputs["cross_2d"], cpu, torch.float32)
    outputs["built_existing"] = build_attention_mask(
        inputs["existing"], 4, m, 7, outputs["cross_1d"], cpu, torch.float32
    )
    tensors = {f"input.{k}": v for k, v in inputs.items()} | {f"output.{k}": v for k, v in outputs.items()}
    tensors = {k: v.clone() for k, v in tensors.items()}
    call = {"op": "mask_utils", "num_new_tokens": m, "batch": b, "num_noisy_tokens": 4, "num_existing_tokens": 7}
    return FixtureResult("conditioning", {}, call, "0", "0", tensors, {})


BASE = {"target": [1, 8, 4, 4, 6], "fps": 24.0, "dtype": "float32", "causal_fix": True}

CASES: list[Case] = [
    Case(
        "conditioning_latent_index",
        "conditioning",
        90,
        "VideoConditionByLatentIndex: a frame at latent index 0 (strength 0.9) and a 2-frame latent at index 2 "
        "(strength 0.5)",
        lambda ctx: items_case(
            ctx,
            {
                **BASE,
                "items": [
                    {"type": "latent_index", "latent": "cond0", "strength": 0.9, "latent_idx": 0},
                    {"type": "latent_index", "latent": "cond1", "strength": 0.5, "latent_idx": 2},
                ],
            },
            {"cond0": ([1, 8, 1, 4, 6], "float32"), "cond1": ([1, 8, 2, 4, 6], "float32")},
        ),
    ),
    Case(
        "conditioning_keyframes",
        "conditioning",
        91,
        "VideoConditionByKeyframeIndex at frame 0 (strength 1) and at the last frame 24 (bf16 keyframes, "
        "strength 0.8), fps 23.976, then clear_conditioning",
        lambda ctx: items_case(
            ctx,
            {
                **BASE,
                "fps": 23.976,
                "items": [
                    {"type": "keyframe", "latent": "kf0", "frame_idx": 0, "strength": 1.0},
                    {"type": "keyframe", "latent": "kf1", "frame_idx": 24, "strength": 0.8},
                ],
                "clear": True,
            },
            {"kf0": ([1, 8, 1, 4, 6], "float32"), "kf1": ([1, 8, 1, 4, 6], "bfloat16")},
        ),
    ),
    Case(
        "conditioning_reference_wrapped",
        "conditioning",
        92,
        "IC-LoRA: a half-resolution reference (downscale 2) wrapped with attention strength 0.5, then a "
        "keyframe wrapped with a per-token 1-D mask, then an unwrapped keyframe (mask grows with ones); bf16 state",
        lambda ctx: items_case(
            ctx,
            {
                **BASE,
                "dtype": "bfloat16",
                "items": [
                    {
                        "type": "wrapper",
                        "attention_mask": 0.5,
                        "inner": {"type": "reference", "latent": "ref", "downscale_factor": 2, "strength": 1.0},
                    },
                    {
                        "type": "wrapper",
                        "attention_mask": "kf_mask",
                        "inner": {"type": "keyframe", "latent": "kf", "frame_idx": 8, "strength": 0.7},
                    },
                    {"type": "keyframe", "latent": "kf2", "frame_idx": 16, "strength": 1.0},
                ],
                "clear": True,
            },
            {
                "ref": ([1, 8, 4, 2, 3], "bfloat16"),
                "kf": ([1, 8, 1, 4, 6], "bfloat16"),
                "kf_mask": ([24], "uniform"),
                "kf2": ([1, 8, 1, 4, 6], "bfloat16"),
            },
        ),
    ),
    Case(
        "conditioning_batch_mask",
        "conditioning",
        93,
        "batch 2: a reference (downscale 1, strength 0.6) wrapped with a [B, M] mask, then a latent-index "
        "image, causal fix off",
        lambda ctx: items_case(
            ctx,
            {
                **BASE,
                "target": [2, 8, 3, 2, 4],
                "fps": 25.0,
                "causal_fix": False,
                "items": [
                    {
                        "type": "wrapper",
                        "attention_mask": "ref_mask",
                        "inner": {"type": "reference", "latent": "ref", "downscale_factor": 1, "strength": 0.6},
                    },
                    {"type": "latent_index", "latent": "img", "strength": 1.0, "latent_idx": 1},
                ],
            },
            {"ref": ([2, 8, 2, 2, 4], "float32"), "ref_mask": ([2, 16], "uniform"), "img": ([2, 8, 1, 2, 4], "float32")},
        ),
    ),
    Case(
        "conditioning_mask_utils",
        "conditioning",
        94,
        "resolve_cross_mask (scalar, 0-D, 1-D, [B,M], [1,M] in bf16) and build_attention_mask (fresh, existing)",
        mask_utils_case,
    ),
]

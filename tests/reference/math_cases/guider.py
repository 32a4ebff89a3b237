"""`guider` fixtures: the reference guiders (ltx_core/components/guiders.py) and perturbation masks
(ltx_core/guidance/perturbations.py) on seeded random predictions.

call: {"op": "guiders" | "legacy_apg" | "multimodal" | "perturbations", ...}; inputs `input.*` (f32), outputs
`output.*` (f32; flags and masks as f32 0/1). Tolerance 1e-5 abs + 1e-5 rel where reductions are involved (the
projection coefficients, norms and stds are sums over a few hundred values in another order: 1.4e-6 seen on
seed 2); the masks are exact."""

from __future__ import annotations

import torch

import ref_compat
from fixture_common import STREAM_INPUT, Case, CaseContext, FixtureResult


def _randn(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(shape, generator=gen, dtype=torch.float32)


GUIDERS = [
    {"name": "cfg", "kind": "cfg", "scale": 3.0, "inputs": ["3d", "5d"]},
    {"name": "cfg_star", "kind": "cfg_star", "scale": 4.0, "inputs": ["3d", "5d1"]},
    {"name": "stg", "kind": "stg", "scale": 1.5, "inputs": ["3d", "5d"]},
    {"name": "apg", "kind": "apg", "scale": 3.0, "eta": 0.5, "norm_threshold": 0.0, "inputs": ["3d", "5d1"]},
    {"name": "apg_clip", "kind": "apg", "scale": 2.5, "eta": 1.0, "norm_threshold": 3.0, "inputs": ["3d", "5d1"]},
    {"name": "cfg_off", "kind": "cfg", "scale": 1.0, "inputs": ["3d"]},
]
SHAPES = {"3d": (1, 24, 16), "5d": (2, 4, 3, 4, 5), "5d1": (1, 4, 3, 4, 5)}


def _guider(spec: dict):  # noqa: ANN202
    from ltx_core.components.guiders import CFGGuider, CFGStarRescalingGuider, LtxAPGGuider, STGGuider

    kind = spec["kind"]
    if kind == "cfg":
        return CFGGuider(spec["scale"])
    if kind == "cfg_star":
        return CFGStarRescalingGuider(spec["scale"])
    if kind == "stg":
        return STGGuider(spec["scale"])
    return LtxAPGGuider(spec["scale"], eta=spec["eta"], norm_threshold=spec["norm_threshold"])


def guiders_case(ctx: CaseContext) -> FixtureResult:
    from ltx_core.components.guiders import projection_coef

    gen = ctx.generator(STREAM_INPUT)
    inputs = {}
    for key, shape in SHAPES.items():
        inputs[f"cond_{key}"] = _randn(gen, *shape)
        inputs[f"uncond_{key}"] = 0.8 * inputs[f"cond_{key}"] + 0.3 * _randn(gen, *shape)
    outputs = {}
    for spec in GUIDERS:
        g = _guider(spec)
        for key in spec["inputs"]:
            outputs[f"{spec['name']}_{key}"] = g.delta(inputs[f"cond_{key}"], inputs[f"uncond_{key}"])
        outputs[f"{spec['name']}_enabled"] = torch.tensor([float(g.enabled())])
    for key in SHAPES:
        outputs[f"projection_coef_{key}"] = projection_coef(inputs[f"cond_{key}"], inputs[f"uncond_{key}"])
    tensors = {f"input.{k}": v for k, v in inputs.items()} | {f"output.{k}": v for k, v in outputs.items()}
    return FixtureResult("guider", {}, {"op": "guiders", "guiders": GUIDERS}, "1e-5", "1e-5", tensors, {})


LEGACY = [
    {"name": "momentum", "scale": 2.0, "eta": 0.7, "norm_threshold": 5.0, "momentum": 0.5},
    {"name": "plain", "scale": 1.5, "eta": 1.0, "norm_threshold": 0.0, "momentum": 0.0},
]


def legacy_apg_case(ctx: CaseContext) -> FixtureResult:
    from ltx_core.components.guiders import LegacyStatefulAPGGuider

    gen = ctx.generator(STREAM_INPUT)
    inputs = {}
    for i in range(3):
        inputs[f"cond_{i}"] = _randn(gen, 1, 12, 8)
        inputs[f"uncond_{i}"] = 0.7 * inputs[f"cond_{i}"] + 0.5 * _randn(gen, 1, 12, 8)
    outputs = {}
    for spec in LEGACY:
        g = LegacyStatefulAPGGuider(
            spec["scale"], spec["eta"], norm_threshold=spec["norm_threshold"], momentum=spec["momentum"]
        )
        for i in range(3):  # successive calls share the running average
            outputs[f"{spec['name']}_{i}"] = g.delta(inputs[f"cond_{i}"], inputs[f"uncond_{i}"])
    tensors = {f"input.{k}": v for k, v in inputs.items()} | {f"output.{k}": v for k, v in outputs.items()}
    return FixtureResult("guider", {}, {"op": "legacy_apg", "guiders": LEGACY}, "1e-5", "1e-5", tensors, {})


PARAMS = [
    {"cfg_scale": 3.0, "stg_scale": 1.0, "rescale_scale": 0.7, "modality_scale": 3.0, "skip_step": 0, "stg_blocks": [29]},
    {"cfg_scale": 7.0, "stg_scale": 1.0, "rescale_scale": 0.0, "modality_scale": 3.0, "skip_step": 1, "stg_blocks": [28]},
    {"cfg_scale": 3.0, "stg_scale": 0.0, "rescale_scale": 0.45, "modality_scale": 1.0, "skip_step": 2, "stg_blocks": []},
    {"cfg_scale": 1.0, "stg_scale": 0.0, "rescale_scale": 1.0, "modality_scale": 1.0, "skip_step": 0, "stg_blocks": None},
]
# "scalar": the unconditional passes that a disabled branch skips are the Python float 0.0
CALLS = [
    {"params": 0, "text": "t", "perturbed": "t", "modality": "t"},
    {"params": 1, "text": "t", "perturbed": "t", "modality": "t"},
    {"params": 2, "text": "t", "perturbed": "scalar", "modality": "scalar"},
    {"params": 3, "text": "scalar", "perturbed": "scalar", "modality": "scalar"},
]
BINS = [[1.0, 0], [0.5, 1], [0.2, 2]]  # (sigma upper bound, params index)
SIGMAS = [2.0, 1.0, 0.75, 0.5, 0.3, 0.2, 0.1, 0.0]


def multimodal_case(ctx: CaseContext) -> FixtureResult:
    from ltx_core.components.guiders import (
        MultiModalGuider,
        MultiModalGuiderFactory,
        MultiModalGuiderParams,
    )

    gen = ctx.generator(STREAM_INPUT)
    params = [MultiModalGuiderParams(**p) for p in PARAMS]
    inputs = {"cond": _randn(gen, 1, 20, 8)}
    for name in ("text", "perturbed", "modality"):
        inputs[f"uncond_{name}"] = 0.9 * inputs["cond"] + 0.4 * _randn(gen, 1, 20, 8)
    outputs = {}
    for i, call in enumerate(CALLS):
        g = MultiModalGuider(params[call["params"]])
        args = [inputs[f"uncond_{n}"] if call[n] == "t" else 0.0 for n in ("text", "perturbed", "modality")]
        outputs[f"pred_{i}"] = g.calculate(inputs["cond"], *args)
    flags, skips = [], []
    for p in params:
        g = MultiModalGuider(p)
        flags.append(
            [float(g.do_unconditional_generation()), float(g.do_perturbed_generation()), float(g.do_isolated_modality_generation())]
        )
        skips.append([float(g.should_skip_step(s)) for s in range(8)])
    outputs["flags"] = torch.tensor(flags)
    outputs["skips"] = torch.tensor(skips)
    factory = MultiModalGuiderFactory.from_dict({k: params[i] for k, i in BINS})
    outputs["bins_cfg"] = torch.tensor([factory.params(s).cfg_scale for s in SIGMAS], dtype=torch.float64)
    const = MultiModalGuiderFactory.constant(params[1])
    outputs["constant_cfg"] = torch.tensor([const.params(s).cfg_scale for s in SIGMAS], dtype=torch.float64)
    tensors = {f"input.{k}": v for k, v in inputs.items()} | {f"output.{k}": v for k, v in outputs.items()}
    call = {"op": "multimodal", "params": PARAMS, "calls": CALLS, "bins": BINS, "sigmas": SIGMAS}
    return FixtureResult("guider", {}, call, "1e-5", "1e-5", tensors, {})


PERTURBATIONS = [
    [],
    [{"type": "skip_video_self_attn", "blocks": [1, 3]}, {"type": "skip_a2v_cross_attn", "blocks": None}],
    [{"type": "skip_video_self_attn", "blocks": None}, {"type": "skip_audio_self_attn", "blocks": [0]}],
]
QUERIES = [[t, b] for t in ("skip_a2v_cross_attn", "skip_v2a_cross_attn", "skip_video_self_attn", "skip_audio_self_attn") for b in range(4)]


def perturbations_case(ctx: CaseContext) -> FixtureResult:
    num_blocks = 1 + max(b for _, b in QUERIES)
    cfg = ref_compat.batched_perturbations(PERTURBATIONS, len(PERTURBATIONS), num_blocks)
    values = torch.zeros(3, 5, 2)
    masks, flags = [], []
    for t, b in QUERIES:
        kind = ref_compat.perturbation_type(t)
        masks.append(ref_compat.perturbation_mask(cfg, kind, b, values))
        flags.append([float(cfg.any_in_batch(kind, b)), float(cfg.all_in_batch(kind, b))])
    tensors = {"output.masks": torch.stack(masks), "output.flags": torch.tensor(flags)}
    call = {"op": "perturbations", "perturbations": PERTURBATIONS, "queries": QUERIES}
    return FixtureResult("guider", {}, call, "0", "0", tensors, {})


CASES: list[Case] = [
    Case("guider_basic", "guider", 75, "CFG, CFG*, STG, LtxAPG (plain and norm-clipped), projection_coef on 3-D and 5-D", guiders_case),
    Case("guider_legacy_apg", "guider", 76, "LegacyStatefulAPGGuider: 3 successive calls, momentum 0.5 / threshold 5 and plain", legacy_apg_case),
    Case(
        "guider_multimodal",
        "guider",
        77,
        "MultiModalGuider.calculate (rescale on/off, scalar 0.0 unconds), flags, skip steps, factory bins",
        multimodal_case,
    ),
    Case("guider_perturbations", "guider", 78, "BatchedPerturbationConfig masks and any/all over 3 samples", perturbations_case),
]

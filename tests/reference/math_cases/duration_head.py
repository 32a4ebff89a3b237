"""`duration_head` fixtures: the LTX-2.5 shot-duration head (`ltx_core.duration_head`) and the frame-count helpers of
`ltx_pipelines` that turn its prediction into a generation length.

`call.op = "head"`: a `DurationHead` built by the reference's `DurationHeadConfigurator.from_metadata` on the meta
device, its state dict loaded strictly (assign) from the fixture's own `duration_head.*` tensors through
`DURATION_HEAD_KEY_OPS` after a safetensors round trip (generate.py's `build_from_checkpoint`). Weights from
generate.py's `det_init`, stored F16 (tiny) or BF16 (full size); the f32 reference runs on exactly those values.
  call.forwards: {output: [video input or null, audio input or null]}: `output.<output>` = head(video, audio),
                 seconds, shape [B] (F32).
  call.predict:  {"output", "video", "audio", "args"}: `DurationPredictor(head)(video, audio, frame_rate=,
                 min_seconds=, max_seconds=)` for each row (frame_rate, min_seconds, max_seconds) of the f64 input
                 `args`; `output.<output>` the frame counts (int64). Rows whose `seconds * frame_rate` lies within
                 1e-3 of a rounding boundary are left out (an f32 port may land on either side).
  Inputs (connector outputs, N(0, 1)): F16 tiny, F32 full size.

`call.op = "frames"`: `ltx_pipelines.utils.helpers.seconds_to_clamped_num_frames` on rows of inputs `seconds`,
`frame_rate` (f64), `min_frames`, `max_frames` (int64); `output.num_frames` (int64). Tolerance 0.

Tolerances of the head cases: atol = max(1e-5, 10 x the f32 reference's max deviation from the same reference run in
float64), rtol 1e-5."""

from __future__ import annotations

import math
import sys
from types import ModuleType

import torch

from fixture_common import STREAM_INPUT, STREAM_WEIGHTS, Case, CaseContext, FixtureResult

TINY_CONFIG = {
    "transformer": {"cross_attention_dim": 32, "audio_cross_attention_dim": 16},
    "duration_head": {"pooler_hidden_dim": 16, "num_queries": 2, "num_pooler_heads": 4, "mlp_hidden": 8},
}
# the released file's header (model_patches/ltx-2.5-duration-head-bf16.safetensors): the head's own defaults
FULL_CONFIG = {"duration_head": {}, "transformer": {"audio_cross_attention_dim": 2048, "cross_attention_dim": 4096}}

BASE_ATOL = 1e-5
BASE_RTOL = 1e-5
F64_ERR_FACTOR = 10.0
# (frame_rate, min_seconds, max_seconds) rows of the predictor calls: the pipelines' default window, windows that
# clamp from below and from above, fractional frame rates
PREDICT_ROWS = [
    (24.0, 1.0, 20.0),
    (25.0, 0.04, 20.0),
    (23.976, 0.1, 8.0),
    (30.0, 3.0, 20.0),
    (29.97, 0.02, 0.3),
    (60.0, 0.05, 40.0),
]
BOUNDARY_MARGIN = 1e-3


def _generator_module() -> ModuleType:
    """generate.py (which imports this module) holds det_init, build_from_checkpoint and the tolerance rounding:
    taken from the running script, or imported when this module is used on its own."""
    main = sys.modules.get("__main__")
    if main is not None and hasattr(main, "build_from_checkpoint") and hasattr(main, "det_init"):
        return main
    import generate

    return generate


def _dims(config: dict) -> tuple[int, int]:
    t = config["transformer"]
    return t["cross_attention_dim"], t["audio_cross_attention_dim"]


def _head_from_checkpoint(ctx: CaseContext, config: dict) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    """Seeded weights under the released keys, and the reference head rebuilt from them by the reference's loader
    path (configurator on meta, DURATION_HEAD_KEY_OPS, strict assign)."""
    from ltx_core.duration_head import DURATION_HEAD_KEY_OPS, DurationHeadConfigurator

    import ref_compat

    gen = _generator_module()
    source = ref_compat.build_model(DurationHeadConfigurator, config)
    state = gen.det_init(source, ctx.generator(STREAM_WEIGHTS))
    dtype = torch.bfloat16 if ctx.full_size else torch.float16
    weights = {"duration_head." + k: v.to(dtype).contiguous().clone() for k, v in state.items()}
    del source, state
    model = gen.build_from_checkpoint(
        DurationHeadConfigurator, DURATION_HEAD_KEY_OPS, config, gen.checkpoint_roundtrip(weights)
    )
    return model, weights


def _rows_off_boundaries(seconds: float, rows: list[tuple[float, float, float]]) -> list[tuple[float, float, float]]:
    kept = []
    for fps, lo, hi in rows:
        x = seconds * fps
        if abs(x - math.floor(x) - 0.5) > BOUNDARY_MARGIN:
            kept.append((fps, lo, hi))
    return kept


def head_case(ctx: CaseContext, config: dict, shapes: dict[str, tuple[int, int]],
              forwards: dict[str, tuple[str | None, str | None]], predict: dict | None) -> FixtureResult:
    """`shapes`: input name -> (batch, tokens); names starting with "video" take the video width, the others the
    audio width. `forwards`: output name -> (video input, audio input)."""
    from ltx_pipelines.utils.blocks import DurationPredictor

    video_dim, audio_dim = _dims(config)
    model, weights = _head_from_checkpoint(ctx, config)
    g = ctx.generator(STREAM_INPUT)
    in_dtype = torch.float32 if ctx.full_size else torch.float16
    inputs = {}
    for name, (b, t) in shapes.items():
        width = video_dim if name.startswith("video") else audio_dim
        inputs[name] = torch.randn((b, t, width), generator=g).to(in_dtype)

    def run(m: torch.nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        def arg(name: str | None) -> torch.Tensor | None:
            return None if name is None else inputs[name].to(dtype)

        with torch.inference_mode():
            return {out: m(arg(v), arg(a)) for out, (v, a) in forwards.items()}

    outputs = run(model, torch.float32)
    tensors = dict(weights)
    tensors.update({"input." + k: v.contiguous() for k, v in inputs.items()})
    tensors.update({"output." + k: v.float().contiguous() for k, v in outputs.items()})
    call: dict = {"op": "head", "forwards": {k: list(v) for k, v in forwards.items()}}
    if predict is not None:
        predictor = DurationPredictor(model)
        v, a = inputs[predict["video"]].float(), inputs[predict["audio"]].float()
        with torch.inference_mode():
            seconds = float(model(v, a).item())
        rows = _rows_off_boundaries(seconds, PREDICT_ROWS)
        with torch.inference_mode():
            frames = [predictor(v, a, frame_rate=fps, min_seconds=lo, max_seconds=hi) for fps, lo, hi in rows]
        tensors["input." + predict["args"]] = torch.tensor(rows, dtype=torch.float64)
        tensors["output." + predict["output"]] = torch.tensor(frames, dtype=torch.int64)
        call["predict"] = predict

    extra = {"weights_dtype": "bfloat16" if ctx.full_size else "float16"}
    atol = BASE_ATOL
    if ctx.f64_check:
        outputs64 = run(model.double(), torch.float64)
        f64_err = max(float((outputs[k].double() - outputs64[k]).abs().max()) for k in outputs)
        extra["f64_max_abs_err"] = f"{f64_err:.3e}"
        atol = max(atol, F64_ERR_FACTOR * f64_err)
    fmt = _generator_module()._fmt_tol
    return FixtureResult("duration_head", config, call, fmt(atol), fmt(BASE_RTOL), tensors, extra)


# (seconds, frame_rate, min_frames, max_frames): in range, clamped below and snapped up to the grid, clamped above,
# exact .5 products (round half to even), fractional frame rates, negative and zero durations, a max below the next
# grid point (off-grid result), min above max, huge durations, and the pipelines' 1 s / 20 s window at common rates
FRAME_ROWS = [
    (2.5, 24.0, 24, 480),
    (0.3, 24.0, 24, 480),
    (30.0, 24.0, 24, 480),
    (1.0, 23.976, 24, 480),
    (0.5, 25.0, 1, 1024),
    (1.5, 25.0, 1, 1024),
    (0.1875, 24.0, 1, 1024),
    (10.0, 29.97, 1, 1024),
    (3.3, 59.94, 1, 1024),
    (-1.0, 24.0, 1, 1024),
    (0.0, 24.0, 1, 100),
    (5.0, 24.0, 20, 22),
    (1.0, 24.0, 30, 10),
    (1e6, 24.0, 1, 1024),
    (4.2, 24.0, 24, 480),
    (4.2, 25.0, 25, 500),
    (0.5, 30.0, 30, 600),
    (25.0, 30.0, 30, 600),
    (0.021, 24.0, 1, 1024),
    (7.0, 8.0, 1, 57),
]


def frames_case(ctx: CaseContext, random_rows: int) -> FixtureResult:
    from ltx_pipelines.utils.helpers import seconds_to_clamped_num_frames

    g = ctx.generator(STREAM_INPUT)
    rows = list(FRAME_ROWS)
    rates = [24.0, 25.0, 30.0, 23.976, 29.97, 50.0, 59.94, 60.0]
    for _ in range(random_rows):
        seconds = math.exp(float(torch.empty((), dtype=torch.float64).uniform_(math.log(0.2), math.log(40.0),
                                                                                generator=g)))
        fps = rates[int(torch.randint(0, len(rates), (), generator=g))]
        lo, hi = (float(x) for x in torch.empty(2, dtype=torch.float64).uniform_(0.5, 25.0, generator=g).sort().values)
        rows.append((seconds, fps, round(lo * fps), round(hi * fps)))
    frames = [seconds_to_clamped_num_frames(s, frame_rate=fps, min_frames=lo, max_frames=hi) for s, fps, lo, hi in rows]
    tensors = {
        "input.seconds": torch.tensor([r[0] for r in rows], dtype=torch.float64),
        "input.frame_rate": torch.tensor([r[1] for r in rows], dtype=torch.float64),
        "input.min_frames": torch.tensor([r[2] for r in rows], dtype=torch.int64),
        "input.max_frames": torch.tensor([r[3] for r in rows], dtype=torch.int64),
        "output.num_frames": torch.tensor(frames, dtype=torch.int64),
    }
    return FixtureResult("duration_head", {}, {"op": "frames"}, "0", "0", tensors, {})


_TINY_FORWARDS = {
    "seconds_av": ("video", "audio"),
    "seconds_video": ("video", None),
    "seconds_audio": (None, "audio"),
    "seconds_av_b2": ("video_b2", "audio_b2"),
}
_FULL_LENGTHS = (128, 1024)

CASES: list[Case] = [
    Case(
        "duration_head_tiny",
        "duration_head",
        127,
        "tiny DurationHead (video 32, audio 16 -> pooler 16, 2 queries, 4 heads, MLP 8), F16 weights: video+audio "
        "(7 + 5 tokens), video only, audio only, a batch of 2 (3 + 9 tokens); DurationPredictor frame counts",
        lambda ctx: head_case(
            ctx,
            TINY_CONFIG,
            {"video": (1, 7), "audio": (1, 5), "video_b2": (2, 3), "audio_b2": (2, 9)},
            _TINY_FORWARDS,
            {"output": "num_frames", "video": "video", "audio": "audio", "args": "predict_args"},
        ),
    ),
    Case(
        "duration_head_frames",
        "duration_head",
        128,
        "seconds_to_clamped_num_frames: in range, clamped on both sides, snapped up, .5 products, fractional rates, "
        "min above max, plus 12 seeded rows",
        lambda ctx: frames_case(ctx, 12),
    ),
    Case(
        "duration_head_full",
        "duration_head",
        129,
        "released DurationHead config (4096 / 2048 -> 256, 1 query, 4 heads, MLP 256), BF16 weights, F32 inputs of "
        "128 and 1024 tokens: video+audio, video only, audio only; DurationPredictor frame counts at 1024",
        lambda ctx: head_case(
            ctx,
            FULL_CONFIG,
            {f"{m}_{t}": (1, t) for t in _FULL_LENGTHS for m in ("video", "audio")},
            {
                f"seconds_{kind}_{t}": (f"video_{t}" if "v" in kind else None, f"audio_{t}" if "a" in kind else None)
                for t in _FULL_LENGTHS
                for kind in ("av", "v", "a")
            },
            {"output": "num_frames_1024", "video": "video_1024", "audio": "audio_1024", "args": "predict_args_1024"},
        ),
        full_size=True,
    ),
]

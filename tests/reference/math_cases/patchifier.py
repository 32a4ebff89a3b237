"""`patchifier` fixtures: the reference patchifiers, `get_pixel_coords`, the latent shapes and the latent
tools' initial states, each run by the reference code on seeded random latents.

call: {"op": ..., op-specific keys}; inputs `input.latent` (f32); outputs f32 tensors, int64 for the
latent-grid bounds (exact), and shape/frame-count lists as int64 tensors."""

from __future__ import annotations

import torch

from fixture_common import STREAM_INPUT, Case, CaseContext, FixtureResult

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def _owned(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every tensor in its own storage (the reference returns views, which safetensors refuses to save)."""
    return {k: v.clone() for k, v in tensors.items()}


def _latent(ctx: CaseContext, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.randn(shape, generator=ctx.generator(STREAM_INPUT), dtype=torch.float32)


def video_patchifier_case(ctx: CaseContext) -> FixtureResult:
    from ltx_core.components.patchifiers import VideoLatentPatchifier, get_pixel_coords
    from ltx_core.types import SpatioTemporalScaleFactors, VideoLatentShape

    latent = _latent(ctx, (2, 6, 3, 4, 6))
    shape = VideoLatentShape.from_torch_shape(latent.shape)
    scales = {
        "default": SpatioTemporalScaleFactors.default(),
        # non-square factors pin down which factor scales which axis
        "t4w16h8": SpatioTemporalScaleFactors(time=4, width=16, height=8),
    }
    tensors = {"input.latent": latent}
    for p in (1, 2):
        pf = VideoLatentPatchifier(patch_size=p)
        tokens = pf.patchify(latent)
        tensors[f"output.tokens_p{p}"] = tokens
        tensors[f"output.unpatchified_p{p}"] = pf.unpatchify(tokens, shape)
        tensors[f"output.token_count_p{p}"] = torch.tensor([pf.get_token_count(shape)], dtype=torch.int64)
        bounds = pf.get_patch_grid_bounds(shape)
        tensors[f"output.bounds_p{p}"] = bounds
        for name, sf in scales.items():
            for causal in (False, True):
                coords = get_pixel_coords(bounds, sf, causal_fix=causal)
                tensors[f"output.pixel_coords_p{p}_{name}_causal{int(causal)}"] = coords
    call = {"op": "video", "patch_sizes": [1, 2], "scales": {k: list(v) for k, v in scales.items()}}
    return FixtureResult("patchifier", {}, call, "0", "0", _owned(tensors), {})


AUDIO_VARIANTS = [
    {"patch_size": 1},
    {"patch_size": 1, "is_causal": False},
    {"patch_size": 1, "shift": 3},
    {"patch_size": 1, "sample_rate": 48000, "hop_length": 512, "audio_latent_downsample_factor": 4},
]


def audio_patchifier_case(ctx: CaseContext) -> FixtureResult:
    from ltx_core.components.patchifiers import AudioPatchifier
    from ltx_core.types import AudioLatentShape

    latent = _latent(ctx, (2, 8, 7, 16))
    shape = AudioLatentShape.from_torch_shape(latent.shape)
    tensors = {"input.latent": latent}
    for i, kw in enumerate(AUDIO_VARIANTS):
        pf = AudioPatchifier(**kw)
        tokens = pf.patchify(latent)
        tensors[f"output.tokens_{i}"] = tokens
        tensors[f"output.unpatchified_{i}"] = pf.unpatchify(tokens, shape)
        tensors[f"output.bounds_{i}"] = pf.get_patch_grid_bounds(shape)
    return FixtureResult("patchifier", {}, {"op": "audio", "variants": AUDIO_VARIANTS}, "0", "0", _owned(tensors), {})


VIDEO_TOOLS = [
    {"target": [1, 8, 3, 4, 6], "fps": 24.0, "dtype": "float32", "causal_fix": True, "initial": True},
    {"target": [2, 8, 2, 2, 4], "fps": 23.976, "dtype": "bfloat16", "causal_fix": True, "initial": False},
    {"target": [1, 8, 4, 2, 2], "fps": 25.0, "dtype": "float32", "causal_fix": False, "initial": False},
    {"target": [1, 8, 3, 4, 4], "fps": 30.0, "dtype": "float32", "causal_fix": True, "initial": True, "patch": 2},
]
AUDIO_TOOLS = [{"target": [1, 8, 9, 16], "dtype": "float32", "initial": True}]
PIXEL_SHAPES = [[1, 121, 512, 768, 24.0], [2, 9, 64, 96, 25.0], [1, 97, 320, 480, 23.976], [1, 1, 32, 32, 30.0]]
DURATIONS = [0.0, 0.1, 0.14, 1.0, 4.04, 5.0417, 10.02]


def latent_tools_case(ctx: CaseContext) -> FixtureResult:
    from ltx_core.components.patchifiers import AudioPatchifier, VideoLatentPatchifier
    from ltx_core.tools import AudioLatentTools, VideoLatentTools
    from ltx_core.types import AudioLatentShape, VideoLatentShape, VideoPixelShape

    gen = ctx.generator(STREAM_INPUT)
    tensors: dict[str, torch.Tensor] = {}
    for i, spec in enumerate(VIDEO_TOOLS):
        shape = VideoLatentShape(*spec["target"])
        tools = VideoLatentTools(
            VideoLatentPatchifier(patch_size=spec.get("patch", 1)), shape, spec["fps"], causal_fix=spec["causal_fix"]
        )
        dtype = DTYPES[spec["dtype"]]
        initial = None
        if spec["initial"]:
            initial = torch.randn(spec["target"], generator=gen).to(dtype)
            tensors[f"input.video_initial_{i}"] = initial
        state = tools.create_initial_state(torch.device("cpu"), dtype, initial)
        for field in ("latent", "clean_latent", "denoise_mask", "positions"):
            tensors[f"output.video_{i}_{field}"] = getattr(state, field)
        back = tools.unpatchify(state)
        tensors[f"output.video_{i}_unpatchified_latent"] = back.latent
        tensors[f"output.video_{i}_unpatchified_mask"] = back.denoise_mask
    for i, spec in enumerate(AUDIO_TOOLS):
        shape = AudioLatentShape(*spec["target"])
        tools = AudioLatentTools(AudioPatchifier(patch_size=1), shape)
        initial = torch.randn(spec["target"], generator=gen)
        tensors[f"input.audio_initial_{i}"] = initial
        state = tools.create_initial_state(torch.device("cpu"), DTYPES[spec["dtype"]], initial)
        for field in ("latent", "clean_latent", "denoise_mask", "positions"):
            tensors[f"output.audio_{i}_{field}"] = getattr(state, field)
    latent_dims, audio_frames = [], []
    for b, f, h, w, fps in PIXEL_SHAPES:
        px = VideoPixelShape(batch=b, frames=f, height=h, width=w, fps=fps)
        latent_dims.append(list(VideoLatentShape.from_pixel_shape(px)))
        audio_frames.append(AudioLatentShape.from_video_pixel_shape(px).frames)
    tensors["output.pixel_to_latent_dims"] = torch.tensor(latent_dims, dtype=torch.int64)
    tensors["output.pixel_to_audio_frames"] = torch.tensor(audio_frames, dtype=torch.int64)
    tensors["output.duration_to_audio_frames"] = torch.tensor(
        [AudioLatentShape.from_duration(batch=1, duration=d).frames for d in DURATIONS], dtype=torch.int64
    )
    call = {
        "op": "latent_tools",
        "video": VIDEO_TOOLS,
        "audio": AUDIO_TOOLS,
        "pixel_shapes": PIXEL_SHAPES,
        "durations": DURATIONS,
    }
    return FixtureResult("patchifier", {}, call, "0", "0", _owned(tensors), {})


CASES: list[Case] = [
    Case(
        "patchifier_video",
        "patchifier",
        85,
        "VideoLatentPatchifier p=1,2: patchify/unpatchify, grid bounds, get_pixel_coords (square and t4w16h8 "
        "factors, causal fix on/off)",
        video_patchifier_case,
    ),
    Case(
        "patchifier_audio",
        "patchifier",
        86,
        "AudioPatchifier: patchify/unpatchify and time bounds (causal, non-causal, shift 3, 48 kHz hop 512)",
        audio_patchifier_case,
    ),
    Case(
        "patchifier_latent_tools",
        "patchifier",
        87,
        "Video/AudioLatentTools initial states (f32, bf16, causal fix off, patch 2, fps 23.976), unpatchify, "
        "pixel->latent shapes, audio frames from durations",
        latent_tools_case,
    ),
]

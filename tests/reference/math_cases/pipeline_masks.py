"""Masks the IC-LoRA and retake pipelines compute themselves (pure math, no weights).

`ic_lora_mask`: `ltx_pipelines.ic_lora._load_mask_video` (its grayscale / [0, 1] arithmetic, in bf16, fed with a
seeded pixel clip instead of a decoded file) and `ICLoraPipeline._downsample_mask_to_latent` (area interpolation,
causal temporal grouping), times the attention strength.
call: {"f_lat", "h_lat", "w_lat", "strength"}; input `pixels [1, 3, F, H, W]` (bf16, [-1, 1]);
outputs `mask [1, 1, F, H, W]` (bf16), `latent_mask [1, f_lat*h_lat*w_lat]` (bf16).

`retake_mask`: `ltx_pipelines.retake.TemporalRegionMask` on fresh video and audio states of a pixel shape, for
several windows (some on exact frame / audio-step boundaries, some random).
call: {"frames", "height", "width", "fps", "windows": [[start, end], ...]}; outputs `video_<i> [1, N, 1]`,
`audio_<i> [1, T, 1]` (f32 denoise masks)."""

from __future__ import annotations

import torch

import ref_compat
from fixture_common import STREAM_INPUT, Case, CaseContext, FixtureResult


def ic_lora_mask_case(ctx: CaseContext, frames: int, height: int, width: int, latent: tuple[int, int, int]) -> FixtureResult:
    import ltx_pipelines.ic_lora as ic
    from ltx_core.types import VideoLatentShape

    g = ctx.generator(STREAM_INPUT)
    # a smooth-ish mask clip with saturated regions, so the clamp and the averages both matter
    pixels = (torch.rand((1, 3, frames, height, width), generator=g) * 2.4 - 1.2).clamp(-1, 1).to(torch.bfloat16)
    strength = float(torch.rand((), generator=g) * 0.8 + 0.1)
    with ref_compat.ic_lora_mask_source(ic, pixels):
        with torch.inference_mode():
            mask = ic._load_mask_video(mask_path="unused", height=height, width=width, num_frames=frames)
            f_lat, h_lat, w_lat = latent
            shape = VideoLatentShape(batch=1, channels=128, frames=f_lat, height=h_lat, width=w_lat)
            latent_mask = ref_compat.downsample_mask_to_latent(ic, mask, shape) * strength
    tensors = {"input.pixels": pixels, "output.mask": mask.contiguous(), "output.latent_mask": latent_mask.contiguous()}
    call = {"f_lat": f_lat, "h_lat": h_lat, "w_lat": w_lat, "strength": strength}
    # bf16 throughout: one bf16 step (2^-8 relative) of slack for a different summation order
    return FixtureResult("ic_lora_mask", {}, call, "4e-3", "8e-3", tensors, {})


def retake_mask_case(ctx: CaseContext, frames: int, height: int, width: int, fps: float) -> FixtureResult:
    from ltx_core.components.patchifiers import AudioPatchifier, VideoLatentPatchifier
    from ltx_core.tools import AudioLatentTools, VideoLatentTools
    from ltx_core.types import AudioLatentShape, VideoLatentShape, VideoPixelShape
    from ltx_pipelines.retake import TemporalRegionMask

    g = ctx.generator(STREAM_INPUT)
    duration = frames / fps
    windows = [
        [0.0, 0.0],  # nothing regenerated (regenerate_* = False)
        [1.0 / fps, 9.0 / fps],  # exactly on pixel-frame boundaries
        [0.04 * 3, 0.04 * 7],  # exactly on audio-latent steps (40 ms)
        [0.0, duration],  # everything
    ]
    for _ in range(3):
        a, b = sorted((torch.rand(2, generator=g) * duration).tolist())
        windows.append([a, b if b > a else a + 0.1])
    shape = VideoPixelShape(batch=1, frames=frames, height=height, width=width, fps=fps)
    vtools = VideoLatentTools(VideoLatentPatchifier(patch_size=1), VideoLatentShape.from_pixel_shape(shape, latent_channels=4), fps)
    atools = AudioLatentTools(AudioPatchifier(patch_size=1), AudioLatentShape.from_video_pixel_shape(shape))
    tensors = {}
    with torch.inference_mode():
        for i, (start, end) in enumerate(windows):
            m = TemporalRegionMask(start_time=start, end_time=end, fps=fps)
            v = m.apply_to(vtools.create_initial_state("cpu", torch.float32), vtools)
            a = m.apply_to(atools.create_initial_state("cpu", torch.float32), atools)
            tensors[f"output.video_{i}"] = v.denoise_mask.contiguous()
            tensors[f"output.audio_{i}"] = a.denoise_mask.contiguous()
    call = {"frames": frames, "height": height, "width": width, "fps": fps, "windows": windows}
    return FixtureResult("retake_mask", {}, call, "0", "0", tensors, {})


CASES: list[Case] = [
    Case("ic_lora_mask", "ic_lora_mask", 116, "17x64x96 bf16 mask clip -> 3x2x3 latent grid",
         lambda ctx: ic_lora_mask_case(ctx, 17, 64, 96, (3, 2, 3))),
    Case("ic_lora_mask_area", "ic_lora_mask", 117, "9x80x72 -> 2x3x2 (overlapping area windows)",
         lambda ctx: ic_lora_mask_case(ctx, 9, 80, 72, (2, 3, 2))),
    Case("retake_mask", "retake_mask", 118, "25 frames 64x96 at 24 fps",
         lambda ctx: retake_mask_case(ctx, 25, 64, 96, 24.0)),
    Case("retake_mask_25fps", "retake_mask", 119, "49 frames 32x32 at 25 fps",
         lambda ctx: retake_mask_case(ctx, 49, 32, 32, 25.0)),
]

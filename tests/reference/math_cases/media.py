"""`media_resize` fixtures: the image resizing of `ltx_pipelines.utils.media_io` — `resize_and_center_crop`
(bilinear, align_corners=False, no antialias, then a centre crop) on a single image and on a frame stack, and
`resize_aspect_ratio_preserving`. Inputs are seeded random uint8 images, stored as f32 (the pipelines convert to
float32 before resizing).

call: {"height", "width", "long_side"}; inputs `image [H, W, 3]`, `frames [F, H, W, 3]` (f32 holding 0..255);
outputs `center_crop [1, 3, 1, height, width]`, `center_crop_frames [1, 3, F, height, width]`,
`aspect [h, w, 3]` (long side = `long_side`)."""

from __future__ import annotations

import torch

from fixture_common import STREAM_INPUT, Case, CaseContext, FixtureResult


def resize_case(ctx: CaseContext, src_hw: tuple[int, int], frames: int, height: int, width: int,
                long_side: int) -> FixtureResult:
    from ltx_pipelines.utils.media_io import resize_and_center_crop, resize_aspect_ratio_preserving

    g = ctx.generator(STREAM_INPUT)
    image = torch.randint(0, 256, (*src_hw, 3), generator=g, dtype=torch.uint8).to(torch.float32)
    stack = torch.randint(0, 256, (frames, *src_hw, 3), generator=g, dtype=torch.uint8).to(torch.float32)
    tensors = {"input.image": image, "input.frames": stack}
    with torch.inference_mode():
        tensors["output.center_crop"] = resize_and_center_crop(image, height, width).contiguous()
        tensors["output.center_crop_frames"] = resize_and_center_crop(stack, height, width).contiguous()
        tensors["output.aspect"] = resize_aspect_ratio_preserving(image, long_side).contiguous()
    call = {"height": height, "width": width, "long_side": long_side}
    # values are on the 0..255 scale
    return FixtureResult("media_resize", {}, call, "1e-3", "1e-5", tensors, {})


CASES: list[Case] = [
    Case("media_resize_up", "media_resize", 100, "upscale 19x27 -> 32x48 (aspect change), 2 frames, long side 40",
         lambda ctx: resize_case(ctx, (19, 27), 2, 32, 48, 40)),
    Case("media_resize_down", "media_resize", 101, "downscale 61x47 -> 24x16, 2 frames, long side 25",
         lambda ctx: resize_case(ctx, (61, 47), 2, 24, 16, 25)),
    Case("media_resize_wide", "media_resize", 102, "strip 9x70 -> 33x33 (odd target), 1 frame, long side 31",
         lambda ctx: resize_case(ctx, (9, 70), 1, 33, 33, 31)),
]

"""`pipeline_params` fixtures: the reference's `PipelineParams` presets, `detect_params` and the default
negative prompt (ltx_pipelines.utils.constants).

Each preset is stored as `output.<preset>_values` (float64: seed, stage-1 height and width, frames, frame
rate, steps, stage-2 height and width), `output.<preset>_<modality>_guider` (float64: cfg, stg, rescale,
modality, skip_step) and `output.<preset>_<modality>_stg_blocks` (int64). `detected_*` is what
`detect_params` returns for a checkpoint whose metadata is this fixture's own (`model_version` key or none);
`output.negative_prompt` holds the UTF-8 bytes of DEFAULT_NEGATIVE_PROMPT."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from fixture_common import Case, CaseContext, FixtureResult


def _params_tensors(prefix: str, p) -> dict[str, torch.Tensor]:  # noqa: ANN001
    out = {
        f"output.{prefix}_values": torch.tensor(
            [
                p.seed,
                p.stage_1_height,
                p.stage_1_width,
                p.num_frames,
                p.frame_rate,
                p.num_inference_steps,
                p.stage_2_height,
                p.stage_2_width,
            ],
            dtype=torch.float64,
        )
    }
    for modality, g in (("video", p.video_guider_params), ("audio", p.audio_guider_params)):
        out[f"output.{prefix}_{modality}_guider"] = torch.tensor(
            [g.cfg_scale, g.stg_scale, g.rescale_scale, g.modality_scale, g.skip_step], dtype=torch.float64
        )
        out[f"output.{prefix}_{modality}_stg_blocks"] = torch.tensor(list(g.stg_blocks or []), dtype=torch.int64)
    return out


def params_case(ctx: CaseContext, model_version: str | None) -> FixtureResult:
    from ltx_pipelines.utils import constants

    metadata = {} if model_version is None else {"model_version": model_version}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "checkpoint.safetensors"
        save_file({"x": torch.zeros(1)}, str(path), metadata=metadata)
        detected = constants.detect_params(str(path))
    tensors: dict[str, torch.Tensor] = {}
    for name, p in (
        ("ltx_2", constants.LTX_2_PARAMS),
        ("ltx_2_3", constants.LTX_2_3_PARAMS),
        ("ltx_2_3_hq", constants.LTX_2_3_HQ_PARAMS),
        ("detected", detected),
    ):
        tensors |= _params_tensors(name, p)
    tensors["output.negative_prompt"] = torch.tensor(
        list(constants.DEFAULT_NEGATIVE_PROMPT.encode("utf-8")), dtype=torch.uint8
    )
    call = {
        "model_version": model_version,
        "default_lora_strength": constants.DEFAULT_LORA_STRENGTH,
        "default_image_crf": constants.DEFAULT_IMAGE_CRF,
        "video_latent_channels": constants.VIDEO_LATENT_CHANNELS,
    }
    return FixtureResult("pipeline_params", {}, call, "0", "0", tensors, metadata)


CASES: list[Case] = [
    Case(
        "pipeline_params_ltx23",
        "pipeline_params",
        97,
        "PipelineParams presets, DEFAULT_NEGATIVE_PROMPT, detect_params on model_version 2.3.0 (this file)",
        lambda ctx: params_case(ctx, "2.3.0"),
    ),
    Case(
        "pipeline_params_ltx2",
        "pipeline_params",
        98,
        "PipelineParams presets, detect_params on a checkpoint without model_version (this file)",
        lambda ctx: params_case(ctx, None),
    ),
]

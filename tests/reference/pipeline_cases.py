"""`pipeline` fixtures: whole reference pipelines (ltx-pipelines 1.2.0) run end to end on the CPU on a model of the
built-in tiny architecture (`ltx-pipelines/src/tiny/tiny_model.json`, shared with ltx-rs), with weights drawn here
from the case's seed, so the wiring between stages (sigmas per stage, upsampling and re-noising between stages,
the audio path, the order of random draws) is checked against the reference's own code.

The fixture is self-contained: the checkpoint's tensors under their released keys (its `config` metadata is the
fixture's `config`), the spatial upsampler's under `spatial_upsampler.`, the Gemma-3 root's under `gemma.` (the
released root's key names), the Gemma root's `config.json` / `tokenizer.json` / `tokenizer_config.json` /
`processor_config.json` / `preprocessor_config.json` as metadata, the pipeline's arguments in `call`, and the
outputs: the decoded video as 1.2.0's `decode_video` yields it (`[F, H, W, 3]` float in [0, 1], the chunks
concatenated) and the waveform `[2, N]`.

What the generator changes in the reference's run (nothing else):
- float32 instead of the pipelines' hard-coded bfloat16 (`torch.bfloat16` read as `torch.float32` inside the
  pipeline modules, and the samplers' `model_dtype=torch.bfloat16` defaults float32), so the comparison is of the math, not of bf16 rounding;
- the noiser's draws stay what the bf16 pipeline draws: `torch.randn` in bfloat16, cast to the float32 latent
  (ltx-rs does the same in float32 runs);
- `torch.cuda.synchronize()` is a no-op (the pipelines call it unconditionally; there is no GPU).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import torch

from fixture_common import Case, CaseContext, FixtureResult
from pipeline_bundle import (
    GEMMA_FILE_PREFIX,
    MODEL_FILE,
    MODEL_OFFSET,
    PIPELINE_ATOL,
    reference_run_patches,
    tiny_bundle,
    write_model,
)


def model_case(ctx: CaseContext, call: dict) -> FixtureResult:
    """The bundle, checked on its own through the pipelines' prompt path: `PromptEncoder([prompt])` (Gemma, then
    the embeddings processor) gives the video and audio contexts every pipeline fixture's prompt starts from."""
    from ltx_pipelines.utils import blocks
    from ltx_pipelines.utils.model_paths import ModelPaths

    bundle = tiny_bundle(ctx)
    with tempfile.TemporaryDirectory() as tmp, reference_run_patches(blocks):
        paths = write_model(Path(tmp), bundle)
        encoder = blocks.PromptEncoder(
            ModelPaths.from_monolith(str(paths.checkpoint), str(paths.gemma)), torch.float32, torch.device("cpu")
        )
        with torch.inference_mode():
            (encoded,) = encoder([call["prompt"]])
    tensors = {
        **bundle.tensors,
        "output.video_context": encoded.video_encoding.float().contiguous(),
        "output.audio_context": encoded.audio_encoding.float().contiguous(),
    }
    extra = {GEMMA_FILE_PREFIX + name: text for name, text in bundle.gemma_files.items()}
    extra["spatial_upsampler_config"] = json.dumps(bundle.up_config, sort_keys=True)
    extra["model_id"] = bundle.model_id
    extra["weights_dtype"] = "float16"
    return FixtureResult("pipeline_model", bundle.config, call, "1e-4", "1e-4", tensors, extra)


def draw_images(ctx: CaseContext, call: dict) -> dict[str, torch.Tensor]:
    """The conditioning images of `call.images` (`[H, W, 3]` uint8, smooth random pictures of the size each names),
    stored as `input.image<i>` and written as PNG by both sides."""
    gen = ctx.generator(1)
    out = {}
    for i, img in enumerate(call.get("images", [])):
        h, w = img["size"]
        coarse = torch.rand(1, 3, 4, 6, generator=gen)
        smooth = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
        out[f"image{i}"] = (smooth[0].permute(1, 2, 0) * 255).round().clamp(0, 255).to(torch.uint8).contiguous()
    return out


def write_images(root: Path, images: dict[str, torch.Tensor]) -> dict[str, str]:
    from PIL import Image

    paths = {}
    for name, pixels in images.items():
        paths[name] = str(root / f"{name}.png")
        Image.fromarray(pixels.numpy()).save(paths[name])
    return paths


def image_inputs(call: dict, paths: dict[str, str]) -> list:
    from ltx_pipelines.utils.args import ImageConditioningInput

    return [
        ImageConditioningInput(paths[f"image{i}"], img["frame_idx"], img["strength"], img["crf"])
        for i, img in enumerate(call.get("images", []))
    ]


def pipeline_result(bundle: SimpleNamespace, call: dict, frames: torch.Tensor, audio: Any) -> FixtureResult:
    tensors = {
        "output.video": frames.float().contiguous(),
        "output.waveform": audio.waveform.float().contiguous(),
        "output.sampling_rate": torch.tensor([audio.sampling_rate], dtype=torch.int64),
    }
    extra = {"model_file": MODEL_FILE, "model_id": bundle.model_id}
    return FixtureResult("pipeline", bundle.config, call, PIPELINE_ATOL, "1e-4", tensors, extra)


def run_reference(ctx: CaseContext, call: dict, module: ModuleType, build: Any, run: Any) -> FixtureResult:
    """`build(paths)` makes the reference pipeline of `module` on the bundle written out, `run(pipeline, paths)`
    calls it (`paths.images`: the call's conditioning images); the decoded chunks and the audio become the fixture's outputs."""
    from ltx_pipelines.utils import blocks
    from ltx_pipelines.utils.model_paths import ModelPaths

    bundle = tiny_bundle(ctx)
    inputs = draw_images(ctx, call)
    with tempfile.TemporaryDirectory() as tmp, reference_run_patches(module, blocks):
        paths = write_model(Path(tmp), bundle)
        paths.model_paths = ModelPaths.from_monolith(str(paths.checkpoint), str(paths.gemma))
        paths.images = image_inputs(call, write_images(Path(tmp), inputs))
        pipeline = build(paths)
        with torch.inference_mode():
            video, audio, *_ = run(pipeline, paths)
            frames = torch.cat([chunk.float() for chunk in video], dim=0)
    result = pipeline_result(bundle, call, frames, audio)
    result.tensors.update({"input." + k: v for k, v in inputs.items()})
    return result


def distilled_case(ctx: CaseContext, call: dict) -> FixtureResult:
    from ltx_pipelines import distilled

    return run_reference(
        ctx,
        call,
        distilled,
        lambda paths: distilled.DistilledPipeline(
            model_paths=paths.model_paths,
            spatial_upsampler_path=str(paths.upsampler),
            loras=[],
            device=torch.device("cpu"),
        ),
        lambda pipeline, paths: pipeline(
            prompt=call["prompt"],
            seed=call["seed"],
            height=call["height"],
            width=call["width"],
            frame_rate=call["frame_rate"],
            images=paths.images,
            num_frames=call["num_frames"],
            tiling_config=_tiling(call),
        ),
    )


def _tiling(call: dict) -> Any:
    """`call.tiling` (temporal tiles only: the spatial tile would need the latent's size) as 1.2.0's config."""
    import ref_compat

    tiling = call.get("tiling")
    if tiling is not None and tiling.get("spatial") is not None:
        raise ValueError("pipeline cases tile the decode in time only")
    return ref_compat.decoder_tiling(tiling, None)


def _guided_kwargs(call: dict, paths: SimpleNamespace, audio_guider: bool = True) -> dict:
    from ltx_core.components.guiders import MultiModalGuiderParams

    kw = dict(
        prompt=call["prompt"],
        negative_prompt=call["negative_prompt"],
        seed=call["seed"],
        height=call["height"],
        width=call["width"],
        frame_rate=call["frame_rate"],
        num_inference_steps=call["num_inference_steps"],
        video_guider_params=MultiModalGuiderParams(**call["video_guider"]),
        images=paths.images,
        num_frames=call["num_frames"],
        tiling_config=_tiling(call),
    )
    if audio_guider:
        kw["audio_guider_params"] = MultiModalGuiderParams(**call["audio_guider"])
    return kw


def _distilled_lora(paths: SimpleNamespace, strength: float) -> list:
    from ltx_core.loader import LoraPathStrengthAndSDOps
    from ltx_core.loader.sd_ops import LTXV_LORA_COMFY_RENAMING_MAP

    return [LoraPathStrengthAndSDOps(str(paths.distilled_lora), strength, LTXV_LORA_COMFY_RENAMING_MAP)]


def one_stage_case(ctx: CaseContext, call: dict) -> FixtureResult:
    from ltx_pipelines import ti2vid_one_stage

    return run_reference(
        ctx,
        call,
        ti2vid_one_stage,
        lambda paths: ti2vid_one_stage.TI2VidOneStagePipeline(
            model_paths=paths.model_paths, loras=[], device=torch.device("cpu")
        ),
        lambda pipeline, paths: pipeline(**_guided_kwargs(call, paths)),
    )


def _lora_two_stage_case(ctx: CaseContext, call: dict, module_name: str, class_name: str) -> FixtureResult:
    """A guided two-stage pipeline with the distilled LoRA at `call.distilled_lora_strength` in stage 2."""
    import importlib

    module = importlib.import_module(f"ltx_pipelines.{module_name}")
    return run_reference(
        ctx,
        call,
        module,
        lambda paths: getattr(module, class_name)(
            model_paths=paths.model_paths,
            distilled_lora=_distilled_lora(paths, call["distilled_lora_strength"]),
            spatial_upsampler_path=str(paths.upsampler),
            loras=[],
            device=torch.device("cpu"),
        ),
        lambda pipeline, paths: pipeline(**_guided_kwargs(call, paths)),
    )


def two_stages_case(ctx: CaseContext, call: dict) -> FixtureResult:
    return _lora_two_stage_case(ctx, call, "ti2vid_two_stages", "TI2VidTwoStagesPipeline")


def keyframe_case(ctx: CaseContext, call: dict) -> FixtureResult:
    return _lora_two_stage_case(ctx, call, "keyframe_interpolation", "KeyframeInterpolationPipeline")


def hq_case(ctx: CaseContext, call: dict) -> FixtureResult:
    from ltx_pipelines import ti2vid_two_stages_hq as hq

    strengths = call["distilled_lora_strengths"]
    return run_reference(
        ctx,
        call,
        hq,
        lambda paths: hq.TI2VidTwoStagesHQPipeline(
            model_paths=paths.model_paths,
            distilled_lora=_distilled_lora(paths, 1.0),
            distilled_lora_strength_stage_1=strengths[0],
            distilled_lora_strength_stage_2=strengths[1],
            spatial_upsampler_path=str(paths.upsampler),
            loras=(),
            device=torch.device("cpu"),
        ),
        lambda pipeline, paths: pipeline(**_guided_kwargs(call, paths)),
    )


def draw_audio(ctx: CaseContext, call: dict) -> torch.Tensor:
    """`call.audio`'s soundtrack: `[channels, samples]` int16 (two detuned tones plus noise)."""
    spec = call["audio"]
    gen = ctx.generator(2)
    n = int(spec["seconds"] * spec["sample_rate"])
    t = torch.arange(n, dtype=torch.float64) / spec["sample_rate"]
    tones = torch.stack([torch.sin(2 * torch.pi * 220 * t), torch.sin(2 * torch.pi * 331 * t)])
    wave = 0.4 * tones + 0.05 * torch.randn(2, n, generator=gen, dtype=torch.float64)
    return (wave.clamp(-1, 1) * 32767).round().to(torch.int16)[: spec["channels"]]


def write_wav(path: Path, samples: torch.Tensor, rate: int) -> None:
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(samples.shape[0])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.t().contiguous().numpy().tobytes())


def a2vid_case(ctx: CaseContext, call: dict) -> FixtureResult:
    from ltx_pipelines import a2vid_two_stage as a2v

    samples = draw_audio(ctx, call)

    def run(pipeline: Any, paths: SimpleNamespace) -> Any:
        wav = Path(paths.checkpoint).parent / "audio.wav"
        write_wav(wav, samples, call["audio"]["sample_rate"])
        return pipeline(**_guided_kwargs(call, paths, audio_guider=False), audio_path=str(wav),
                        audio_start_time=call["audio"]["start_time"])

    result = run_reference(
        ctx,
        call,
        a2v,
        lambda paths: a2v.A2VidPipelineTwoStage(
            model_paths=paths.model_paths,
            distilled_lora=_distilled_lora(paths, call["distilled_lora_strength"]),
            spatial_upsampler_path=str(paths.upsampler),
            loras=[],
            device=torch.device("cpu"),
        ),
        run,
    )
    result.tensors["input.audio"] = samples.to(torch.int64).contiguous()
    return result


PROMPT = "a red car drives slowly on a wide street at night"

DISTILLED_CALL = {
    "pipeline": "distilled",
    "prompt": PROMPT,
    "height": 64,
    "width": 128,
    "num_frames": 9,
    "frame_rate": 25.0,
    "noise": "torch-cpu",
}

ONE_STAGE_CALL = {
    "pipeline": "one_stage",
    "prompt": PROMPT,
    "negative_prompt": "dark night rain",
    "height": 64,
    "width": 96,
    "num_frames": 9,
    "frame_rate": 24.0,
    "num_inference_steps": 4,
    # CFG + STG (block 1) + modality guidance + rescale on video; CFG + modality on audio, STG every other step
    "video_guider": {"cfg_scale": 3.0, "stg_scale": 1.0, "stg_blocks": [1], "rescale_scale": 0.7,
                     "modality_scale": 3.0, "skip_step": 0},
    "audio_guider": {"cfg_scale": 7.0, "stg_scale": 1.0, "stg_blocks": [0], "rescale_scale": 0.7,
                     "modality_scale": 3.0, "skip_step": 1},
    "noise": "torch-cpu",
}

TWO_STAGES_CALL = {
    **ONE_STAGE_CALL,
    "pipeline": "two_stages",
    "height": 64,
    "width": 128,
    "num_frames": 9,
    "num_inference_steps": 3,
    "distilled_lora_strength": 0.8,
}

DISTILLED_IMAGES_CALL = {
    **DISTILLED_CALL,
    # the first frame replaced by an image (another aspect ratio: resized and center-cropped), a keyframe at pixel
    # frame 8; CRF 0: no H.264 round trip (its encoder is not the reference's libx264)
    "images": [
        {"size": [40, 96], "frame_idx": 0, "strength": 0.9, "crf": 0},
        {"size": [72, 120], "frame_idx": 8, "strength": 0.7, "crf": 0},
    ],
}

KEYFRAME_CALL = {
    **TWO_STAGES_CALL,
    "pipeline": "keyframe_interpolation",
    "num_frames": 17,
    # the decode in temporal tiles of 16 frames overlapping by 8
    "tiling": {"spatial": None, "temporal": {"tile_size_in_frames": 16, "tile_overlap_in_frames": 8}},
    "images": [
        {"size": [64, 128], "frame_idx": 0, "strength": 1.0, "crf": 0},
        {"size": [48, 112], "frame_idx": 16, "strength": 0.8, "crf": 0},
    ],
}

HQ_CALL = {
    **TWO_STAGES_CALL,
    "pipeline": "two_stages_hq",
    "num_inference_steps": 2,
    "distilled_lora_strengths": [0.25, 0.5],
}
del HQ_CALL["distilled_lora_strength"]

A2VID_CALL = {
    **TWO_STAGES_CALL,
    "pipeline": "a2vid",
    # a stereo 16 kHz WAV (PCM16), read from 0.1 s on: longer than the video, cut to its duration
    "audio": {"sample_rate": 16000, "channels": 2, "seconds": 0.6, "start_time": 0.1},
}
del A2VID_CALL["audio_guider"]

def pipeline_case(name: str, offset: int, description: str, run: Any, call: dict) -> Case:
    """A `pipeline` case: `run(ctx, call)` with `call.seed` offset by the generator's `--seed`; it reads the bundle."""
    return Case(
        name,
        "pipeline",
        offset,
        description,
        lambda ctx: run(ctx, {**call, "seed": call["seed"] + ctx.seed}),
        requires=("pipeline_model",),
    )


CASES = [
    Case(
        "pipeline_model",
        "pipeline_model",
        MODEL_OFFSET,
        "the tiny model the pipeline fixtures run on (checkpoint, spatial upsampler, Gemma-3 root), weights drawn from "
        "the seed; checked by the pipelines' prompt encoding (PromptEncoder: Gemma-3 + embeddings processor) of the "
        "pipeline prompt, f32",
        lambda ctx: model_case(ctx, {"prompt": PROMPT}),
    ),
    pipeline_case(
        "pipeline_distilled",
        181,
        "DistilledPipeline end to end on the tiny model (64x128, 9 frames, 25 fps, no image, untiled), f32",
        distilled_case,
        {**DISTILLED_CALL, "seed": 10},
    ),
    pipeline_case(
        "pipeline_one_stage",
        182,
        "TI2VidOneStagePipeline end to end on the tiny model (64x96, 9 frames, 24 fps, 4 steps, negative prompt, "
        "video CFG 3 + STG 1 + modality 3 + rescale 0.7, audio CFG 7 + STG 1 every other step + modality 3), f32",
        one_stage_case,
        {**ONE_STAGE_CALL, "seed": 20},
    ),
    pipeline_case(
        "pipeline_two_stages",
        183,
        "TI2VidTwoStagesPipeline end to end on the tiny model (64x128, 9 frames, 3 guided stage-1 steps with the "
        "one-stage guiders, x2 upsampler, stage 2 with a rank-2 distilled LoRA at 0.8), f32",
        two_stages_case,
        {**TWO_STAGES_CALL, "seed": 30},
    ),
    pipeline_case(
        "pipeline_distilled_images",
        184,
        "DistilledPipeline with images: frame 0 replaced (strength 0.9), a keyframe at pixel frame 8 (strength 0.7), "
        "both resized and center-cropped from other aspect ratios, CRF 0; 64x128, 9 frames, f32",
        distilled_case,
        {**DISTILLED_IMAGES_CALL, "seed": 40},
    ),
    pipeline_case(
        "pipeline_keyframe_interpolation",
        185,
        "KeyframeInterpolationPipeline: keyframes at pixel frames 0 (strength 1) and 16 (0.8, resized and cropped), "
        "64x128, 17 frames, 3 guided steps, distilled LoRA 0.8 in stage 2, decoded in temporal tiles (16 / 8), f32",
        keyframe_case,
        {**KEYFRAME_CALL, "seed": 50},
    ),
    pipeline_case(
        "pipeline_two_stages_hq",
        186,
        "TI2VidTwoStagesHQPipeline: res_2s, 2 guided stage-1 steps, the distilled LoRA at 0.25 in stage 1 and 0.5 in "
        "stage 2, 64x128, 9 frames, f32",
        hq_case,
        {**HQ_CALL, "seed": 60},
    ),
    pipeline_case(
        "pipeline_a2vid",
        187,
        "A2VidPipelineTwoStage: video for a stereo 16 kHz WAV from 0.1 s on (stored as input.audio, PCM16 values as int64), video "
        "guider only, 64x128, 9 frames, 3 guided steps, distilled LoRA 0.8, f32",
        a2vid_case,
        {**A2VID_CALL, "seed": 70},
    ),
]

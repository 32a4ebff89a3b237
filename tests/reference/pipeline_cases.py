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

import contextlib
import hashlib
import json
import tempfile
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, Iterator

import torch
from safetensors.torch import save_file

from fixture_common import Case, CaseContext, FixtureResult

REPO = Path(__file__).resolve().parents[2]
TINY_MODEL_JSON = REPO / "ltx-pipelines" / "src" / "tiny" / "tiny_model.json"

UPSAMPLER_PREFIX = "spatial_upsampler."
GEMMA_PREFIX = "gemma."
# Gemma root files stored as metadata (`gemma_file:<name>`); the weights go under GEMMA_PREFIX
GEMMA_FILE_PREFIX = "gemma_file:"

# one weight stream per component (CaseContext streams 0..9)
STREAMS = {
    "transformer": 0,
    "video_encoder": 1,
    "video_decoder": 2,
    "audio_encoder": 3,
    "audio_decoder": 4,
    "vocoder": 5,
    "embeddings_processor": 6,
    "latent_upsampler": 7,
    "gemma": 8,
    "distilled_lora": 9,
}

# the reference's vision tower is never run (no image is given to Gemma), but the root must hold one
GEMMA_VISION = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=28,
                    patch_size=14)
GEMMA_MM_TOKENS = 4


def tiny_model() -> dict:
    return json.loads(TINY_MODEL_JSON.read_text())


def _component_weights(ctx: CaseContext, name: str, config: dict, call: dict) -> dict[str, torch.Tensor]:
    import generate

    component = generate.COMPONENTS[name]
    model = generate.ref_compat.build_model(generate.configurator_for(component, call), config)
    if any(t.is_meta for t in model.state_dict().values()):
        model = model.to_empty(device="cpu")
    state = generate.det_init(model, ctx.generator(STREAMS[name]))
    weights = generate.to_checkpoint_keys(state, component.weight_prefix, torch.float16)
    if name == "transformer":
        # the reference builds the transformer without a dtype cast (it runs in the file's dtype): float32 storage
        # of the f16-rounded values
        weights = {k: v.float() for k, v in weights.items()}
    return weights


def checkpoint_tensors(ctx: CaseContext, config: dict, gemma_text: dict) -> dict[str, torch.Tensor]:
    """Every component of the monolithic checkpoint under its released keys (F16; the transformer's F32 holding
    f16-rounded values). The VAEs' shared
    `per_channel_statistics` come from the encoder's draw (a checkpoint stores them once)."""
    gemma_dims = {"gemma_hidden_size": gemma_text["hidden_size"],
                  "gemma_num_hidden_layers": gemma_text["num_hidden_layers"]}
    parts = [
        ("transformer", {"model_type": "audio_video"}),
        ("embeddings_processor", gemma_dims),
        ("video_encoder", {}),
        ("video_decoder", {}),
        ("audio_encoder", {}),
        ("audio_decoder", {}),
        ("vocoder", {}),
    ]
    tensors: dict[str, torch.Tensor] = {}
    for name, call in parts:
        for key, value in _component_weights(ctx, name, config, call).items():
            tensors.setdefault(key, value)
    return tensors


SPECIAL = ["<pad>", "<eos>", "<bos>", "<unk>"]
# the image tokens Gemma-3's processor requires of its tokenizer (never in a prompt)
IMAGE_TOKENS = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}


def gemma_vocab(words: list[str]) -> dict[str, int]:
    vocab = {t: i for i, t in enumerate(SPECIAL)}
    for w in [*words, *IMAGE_TOKENS.values()]:
        vocab.setdefault(w, len(vocab))
    return vocab


def gemma_root_files(words: list[str], text: dict) -> tuple[dict[str, str], dict]:
    """The tiny Gemma-3 root's JSON files (a word-level tokenizer over `words`, lower-casing, BOS prepended, like
    the built-in tiny model's) and its text config."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = gemma_vocab(words)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", 2)])
    tok.add_special_tokens([*SPECIAL, *IMAGE_TOKENS.values()])
    text_config = {
        **text,
        "vocab_size": len(vocab),
        "rope_theta": 1_000_000.0,
        "rope_local_base_freq": 10_000.0,
        "rope_scaling": {"rope_type": "linear", "factor": 8.0},
        "rms_norm_eps": 1e-6,
    }
    config = {
        "model_type": "gemma3",
        "architectures": ["Gemma3ForConditionalGeneration"],
        "text_config": {"model_type": "gemma3_text", "hidden_activation": "gelu_pytorch_tanh", **text_config},
        "vision_config": {"model_type": "siglip_vision_model", **GEMMA_VISION},
        "mm_tokens_per_image": GEMMA_MM_TOKENS,
        "image_token_index": vocab[IMAGE_TOKENS["image_token"]],
        "boi_token_index": vocab[IMAGE_TOKENS["boi_token"]],
        "eoi_token_index": vocab[IMAGE_TOKENS["eoi_token"]],
    }
    files = {
        "config.json": json.dumps(config, sort_keys=True),
        "tokenizer.json": tok.to_str(),
        "tokenizer_config.json": json.dumps({
            "tokenizer_class": "GemmaTokenizer", "bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>",
            "unk_token": "<unk>", "padding_side": "left", "add_bos_token": True, "add_eos_token": False,
            "extra_special_tokens": IMAGE_TOKENS,
        }, sort_keys=True),
        "processor_config.json": json.dumps({"processor_class": "Gemma3Processor", "image_seq_length": GEMMA_MM_TOKENS},
                                            sort_keys=True),
        "preprocessor_config.json": json.dumps({
            "image_processor_type": "Gemma3ImageProcessor", "size": {"height": 28, "width": 28},
            "do_resize": True, "do_rescale": True, "do_normalize": True, "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5], "rescale_factor": 1 / 255, "resample": 2,
        }, sort_keys=True),
    }
    return files, config


def _released_gemma_key(key: str) -> str | None:
    """transformers 5 `Gemma3ForConditionalGeneration` keys -> the released root's (transformers 4.5x) keys."""
    for module, released in (
        ("model.language_model.", "language_model.model."),
        ("model.vision_tower.", "vision_tower.vision_model."),
        ("model.multi_modal_projector.", "multi_modal_projector."),
    ):
        if key.startswith(module):
            return released + key[len(module):]
    if key == "lm_head.weight":
        return None  # tied to the embedding
    raise KeyError(key)


def gemma_tensors(ctx: CaseContext, config: dict) -> dict[str, torch.Tensor]:
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    model = Gemma3ForConditionalGeneration(Gemma3Config.from_dict(config)).eval()
    gen = ctx.generator(STREAMS["gemma"])
    out = {}
    for name, p in sorted(model.state_dict().items()):
        key = _released_gemma_key(name)
        if key is None or not p.is_floating_point():
            continue
        value = (0.3 if p.dim() == 1 else 0.08) * torch.randn(p.shape, generator=gen)
        out[key] = value.half()
    return out


LORA_PREFIX = "distilled_lora."
# the modules the tiny distilled LoRA adapts (rank 2): video and audio attention and feed-forwards of both blocks
LORA_MODULES = [
    f"transformer_blocks.{b}.{m}"
    for b in range(2)
    for m in ("attn1.to_q", "attn1.to_v", "attn2.to_k", "ff.net.2", "audio_attn1.to_out.0", "audio_ff.net.0.proj")
]
LORA_RANK = 2


def distilled_lora_tensors(ctx: CaseContext, checkpoint: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A rank-2 LoRA (bf16, ComfyUI `diffusion_model.*` keys, like the released distilled LoRAs) standing in for the
    distilled LoRA the two-stage pipelines fuse into stage 2."""
    gen = ctx.generator(STREAMS["distilled_lora"])
    out = {}
    for module in LORA_MODULES:
        out_f, in_f = checkpoint[f"model.diffusion_model.{module}.weight"].shape
        a = torch.randn(LORA_RANK, in_f, generator=gen) / in_f**0.5
        b = 0.5 * torch.randn(out_f, LORA_RANK, generator=gen)
        out[f"diffusion_model.{module}.lora_A.weight"] = a.bfloat16()
        out[f"diffusion_model.{module}.lora_B.weight"] = b.bfloat16()
    return out


class _Float32Torch(ModuleType):
    """`torch` as the pipeline modules see it during a fixture run: `torch.bfloat16` is float32."""

    def __init__(self) -> None:
        super().__init__("torch")

    def __getattr__(self, name: str) -> Any:
        return torch.float32 if name == "bfloat16" else getattr(torch, name)


@contextlib.contextmanager
def reference_run_patches(*modules: ModuleType) -> Iterator[None]:
    """The three changes to the reference's run listed in the module docstring."""
    from ltx_core.components import noisers
    from ltx_pipelines.utils import samplers

    originals = [(m, m.torch) for m in modules]
    # the samplers' `model_dtype=torch.bfloat16` defaults (bound at import)
    loops = [f for f in vars(samplers).values() if callable(f) and getattr(f, "__module__", "") == samplers.__name__]
    defaults = [(f, f.__defaults__, f.__kwdefaults__) for f in loops if hasattr(f, "__defaults__")]

    def f32(values: Any) -> Any:
        if values is None:
            return None
        if isinstance(values, dict):
            return {k: torch.float32 if v is torch.bfloat16 else v for k, v in values.items()}
        return tuple(torch.float32 if v is torch.bfloat16 else v for v in values)
    sample = noisers.GaussianNoiser._sample_noise
    sync = torch.cuda.synchronize

    def bf16_noise(self: Any, latent_state: Any) -> torch.Tensor:
        latent = latent_state.latent
        noise = torch.randn(*latent.shape, device=latent.device, dtype=torch.bfloat16, generator=self.generator)
        return noise.to(latent.dtype)

    try:
        for m in modules:
            m.torch = _Float32Torch()
        noisers.GaussianNoiser._sample_noise = bf16_noise
        torch.cuda.synchronize = lambda *a, **k: None
        for f, d, kd in defaults:
            f.__defaults__, f.__kwdefaults__ = f32(d), f32(kd)
        yield
    finally:
        for f, d, kd in defaults:
            f.__defaults__, f.__kwdefaults__ = d, kd
        for m, t in originals:
            m.torch = t
        noisers.GaussianNoiser._sample_noise = sample
        torch.cuda.synchronize = sync


MODEL_FILE = "pipeline_model.safetensors"
# both sides compute in float32 (measured: the video within 3e-6 and the waveform within 2e-8 on seeds 0-2); the tiny
# vocoder's waveform peaks near 0.02, so the base 1e-4 would hide a wrong audio path
PIPELINE_ATOL = "2e-5"
MODEL_OFFSET = 180


def model_context(ctx: CaseContext) -> CaseContext:
    """The weights' streams: the model case's, whichever pipeline case asks."""
    return CaseContext(seed=ctx.seed, offset=MODEL_OFFSET, full_size=False)


def tiny_bundle(ctx: CaseContext) -> SimpleNamespace:
    """The tiny model of this seed: checkpoint, upsampler and Gemma-root tensors, configs and root files."""
    tiny = tiny_model()
    ctx = model_context(ctx)
    config = tiny["checkpoint_config"]
    up_config = tiny["spatial_upsampler_config"]
    gemma_files, gemma_config = gemma_root_files(tiny["tokenizer_words"], tiny["gemma_text_config"])
    bundle = SimpleNamespace(
        config=config,
        up_config=up_config,
        gemma_files=gemma_files,
        checkpoint=checkpoint_tensors(ctx, config, tiny["gemma_text_config"]),
        upsampler=_component_weights(ctx, "latent_upsampler", up_config, {}),
        gemma=gemma_tensors(ctx, gemma_config),
    )
    bundle.distilled_lora = distilled_lora_tensors(ctx, bundle.checkpoint)
    bundle.tensors = {
        **bundle.checkpoint,
        **{UPSAMPLER_PREFIX + k: v for k, v in bundle.upsampler.items()},
        **{GEMMA_PREFIX + k: v for k, v in bundle.gemma.items()},
        **{LORA_PREFIX + k: v for k, v in bundle.distilled_lora.items()},
    }
    digest = hashlib.sha256()
    for name in sorted(bundle.tensors):
        t = bundle.tensors[name].contiguous()
        digest.update(f"{name}:{t.dtype}:{list(t.shape)}:".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.dim() else t.reshape(1).view(torch.uint8).numpy().tobytes())
    bundle.model_id = digest.hexdigest()
    return bundle


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


def write_model(root: Path, bundle: SimpleNamespace) -> SimpleNamespace:
    """The bundle as the files a user would have: checkpoint, upsampler, Gemma root."""
    paths = SimpleNamespace(checkpoint=root / "checkpoint.safetensors", upsampler=root / "upsampler.safetensors",
                            gemma=root / "gemma", distilled_lora=root / "distilled_lora.safetensors")
    save_file(bundle.distilled_lora, str(paths.distilled_lora))
    save_file(bundle.checkpoint, str(paths.checkpoint), metadata={"config": json.dumps(bundle.config, sort_keys=True)})
    save_file(bundle.upsampler, str(paths.upsampler), metadata={"config": json.dumps(bundle.up_config, sort_keys=True)})
    paths.gemma.mkdir()
    for name, text in bundle.gemma_files.items():
        (paths.gemma / name).write_text(text)
    save_file(bundle.gemma, str(paths.gemma / "model.safetensors"))
    return paths


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
            tiling_config=None,
        ),
    )


def one_stage_case(ctx: CaseContext, call: dict) -> FixtureResult:
    from ltx_core.components.guiders import MultiModalGuiderParams
    from ltx_pipelines import ti2vid_one_stage

    return run_reference(
        ctx,
        call,
        ti2vid_one_stage,
        lambda paths: ti2vid_one_stage.TI2VidOneStagePipeline(
            model_paths=paths.model_paths, loras=[], device=torch.device("cpu")
        ),
        lambda pipeline, paths: pipeline(
            prompt=call["prompt"],
            negative_prompt=call["negative_prompt"],
            seed=call["seed"],
            height=call["height"],
            width=call["width"],
            frame_rate=call["frame_rate"],
            num_inference_steps=call["num_inference_steps"],
            video_guider_params=MultiModalGuiderParams(**call["video_guider"]),
            audio_guider_params=MultiModalGuiderParams(**call["audio_guider"]),
            images=paths.images,
            num_frames=call["num_frames"],
            tiling_config=None,
        ),
    )


def two_stages_case(ctx: CaseContext, call: dict) -> FixtureResult:
    from ltx_core.components.guiders import MultiModalGuiderParams
    from ltx_core.loader import LoraPathStrengthAndSDOps
    from ltx_core.loader.sd_ops import LTXV_LORA_COMFY_RENAMING_MAP
    from ltx_pipelines import ti2vid_two_stages

    return run_reference(
        ctx,
        call,
        ti2vid_two_stages,
        lambda paths: ti2vid_two_stages.TI2VidTwoStagesPipeline(
            model_paths=paths.model_paths,
            distilled_lora=[LoraPathStrengthAndSDOps(str(paths.distilled_lora), call["distilled_lora_strength"],
                                                     LTXV_LORA_COMFY_RENAMING_MAP)],
            spatial_upsampler_path=str(paths.upsampler),
            loras=[],
            device=torch.device("cpu"),
        ),
        lambda pipeline, paths: pipeline(
            prompt=call["prompt"],
            negative_prompt=call["negative_prompt"],
            seed=call["seed"],
            height=call["height"],
            width=call["width"],
            frame_rate=call["frame_rate"],
            num_inference_steps=call["num_inference_steps"],
            video_guider_params=MultiModalGuiderParams(**call["video_guider"]),
            audio_guider_params=MultiModalGuiderParams(**call["audio_guider"]),
            images=paths.images,
            num_frames=call["num_frames"],
            tiling_config=None,
        ),
    )


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
        tiling_config=None,
    )
    if audio_guider:
        kw["audio_guider_params"] = MultiModalGuiderParams(**call["audio_guider"])
    return kw


def _distilled_lora(paths: SimpleNamespace, strength: float) -> list:
    from ltx_core.loader import LoraPathStrengthAndSDOps
    from ltx_core.loader.sd_ops import LTXV_LORA_COMFY_RENAMING_MAP

    return [LoraPathStrengthAndSDOps(str(paths.distilled_lora), strength, LTXV_LORA_COMFY_RENAMING_MAP)]


def keyframe_case(ctx: CaseContext, call: dict) -> FixtureResult:
    from ltx_pipelines import keyframe_interpolation as ki

    return run_reference(
        ctx,
        call,
        ki,
        lambda paths: ki.KeyframeInterpolationPipeline(
            model_paths=paths.model_paths,
            distilled_lora=_distilled_lora(paths, call["distilled_lora_strength"]),
            spatial_upsampler_path=str(paths.upsampler),
            loras=[],
            device=torch.device("cpu"),
        ),
        lambda pipeline, paths: pipeline(**_guided_kwargs(call, paths)),
    )


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
    Case(
        "pipeline_distilled",
        "pipeline",
        181,
        "DistilledPipeline end to end on the tiny model (64x128, 9 frames, 25 fps, no image, untiled), f32",
        lambda ctx: distilled_case(ctx, {**DISTILLED_CALL, "seed": 10 + ctx.seed}),
        requires=("pipeline_model",),
    ),
    Case(
        "pipeline_one_stage",
        "pipeline",
        182,
        "TI2VidOneStagePipeline end to end on the tiny model (64x96, 9 frames, 24 fps, 4 steps, negative prompt, "
        "video CFG 3 + STG 1 + modality 3 + rescale 0.7, audio CFG 7 + STG 1 every other step + modality 3), f32",
        lambda ctx: one_stage_case(ctx, {**ONE_STAGE_CALL, "seed": 20 + ctx.seed}),
        requires=("pipeline_model",),
    ),
    Case(
        "pipeline_two_stages",
        "pipeline",
        183,
        "TI2VidTwoStagesPipeline end to end on the tiny model (64x128, 9 frames, 3 guided stage-1 steps with the "
        "one-stage guiders, x2 upsampler, stage 2 with a rank-2 distilled LoRA at 0.8), f32",
        lambda ctx: two_stages_case(ctx, {**TWO_STAGES_CALL, "seed": 30 + ctx.seed}),
        requires=("pipeline_model",),
    ),
    Case(
        "pipeline_distilled_images",
        "pipeline",
        184,
        "DistilledPipeline with images: frame 0 replaced (strength 0.9), a keyframe at pixel frame 8 (strength 0.7), "
        "both resized and center-cropped from other aspect ratios, CRF 0; 64x128, 9 frames, f32",
        lambda ctx: distilled_case(ctx, {**DISTILLED_IMAGES_CALL, "seed": 40 + ctx.seed}),
        requires=("pipeline_model",),
    ),
    Case(
        "pipeline_keyframe_interpolation",
        "pipeline",
        185,
        "KeyframeInterpolationPipeline: keyframes at pixel frames 0 (strength 1) and 16 (0.8, resized and cropped), "
        "64x128, 17 frames, 3 guided steps, distilled LoRA 0.8 in stage 2, f32",
        lambda ctx: keyframe_case(ctx, {**KEYFRAME_CALL, "seed": 50 + ctx.seed}),
        requires=("pipeline_model",),
    ),
    Case(
        "pipeline_two_stages_hq",
        "pipeline",
        186,
        "TI2VidTwoStagesHQPipeline: res_2s, 2 guided stage-1 steps, the distilled LoRA at 0.25 in stage 1 and 0.5 in "
        "stage 2, 64x128, 9 frames, f32",
        lambda ctx: hq_case(ctx, {**HQ_CALL, "seed": 60 + ctx.seed}),
        requires=("pipeline_model",),
    ),
    Case(
        "pipeline_a2vid",
        "pipeline",
        187,
        "A2VidPipelineTwoStage: video for a stereo 16 kHz WAV from 0.1 s on (stored as input.audio, PCM16 values as int64), video "
        "guider only, 64x128, 9 frames, 3 guided steps, distilled LoRA 0.8, f32",
        lambda ctx: a2vid_case(ctx, {**A2VID_CALL, "seed": 70 + ctx.seed}),
        requires=("pipeline_model",),
    ),
]

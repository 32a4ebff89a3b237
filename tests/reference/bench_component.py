#!/usr/bin/env python3
"""Time a PyTorch reference component on a fixture-format file (CPU, float32).

Usage: bench_component.py FILE --runs N [--warmup 1] [--threads 2]

The file is read like a checkpoint, as generate.py's fixtures are: metadata `component`, `config` and `call`;
weights through the component's reference SDOps filter (strict load, cast to float32); inputs `input.*`. The
timed call is exactly what generate.py runs for that component (e.g. `LatentUpsampler.forward`), under
torch.inference_mode().

Prints one JSON line on stdout: {"median_s", "times_s", "model_rss_mb", "peak_rss_mb"}; the rest goes to
stderr. model_rss_mb = VmRSS after the model is built (file closed), peak_rss_mb = process peak (VmHWM).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

sys.path.insert(0, str(Path(__file__).resolve().parent))

import generate  # noqa: E402
import ref_compat  # noqa: E402
from bench_vae_decode import current_rss_mb, peak_rss_mb  # noqa: E402

LOG = logging.getLogger("bench_component")


def _report(times: list[float], model_rss: float) -> None:
    print(
        json.dumps(
            {
                "median_s": round(statistics.median(times), 4),
                "times_s": [round(t, 4) for t in times],
                "model_rss_mb": round(model_rss, 1),
                "peak_rss_mb": round(peak_rss_mb(), 1),
            }
        ),
        flush=True,
    )


def bench_gemma(args: argparse.Namespace, f, meta: dict, t0: float) -> int:  # noqa: ANN001
    """Gemma-3 text decoder: transformers' model built from the reference's GEMMA3_CONFIG_FOR_LTX with the
    file's `text_config` widths, language-model weights from the file, timed as GemmaTextEncoder.encode runs
    it (`model.model(input_ids, attention_mask, output_hidden_states=True)`)."""
    import copy

    from transformers import Gemma3Config
    from transformers.models.gemma3 import Gemma3ForConditionalGeneration

    from ltx_core.text_encoders.gemma.config import GEMMA3_CONFIG_FOR_LTX

    data = copy.deepcopy(GEMMA3_CONFIG_FOR_LTX.to_dict())
    data["text_config"].update(json.loads(meta["config"])["text_config"])
    data["vision_config"].update(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=28, patch_size=14
    )
    data["mm_tokens_per_image"] = 4
    model = Gemma3ForConditionalGeneration(Gemma3Config.from_dict(data)).eval()
    state = {k[len("language_model.model.") :]: f.get_tensor(k).to(torch.float32)
             for k in f.keys() if k.startswith("language_model.model.")}
    model.model.language_model.load_state_dict(state, strict=True)
    ids = f.get_tensor("input.input_ids")
    mask = f.get_tensor("input.attention_mask")
    del state
    gc.collect()
    model_rss = current_rss_mb()
    LOG.info("built Gemma in %.1f s, RSS %.0f MB", time.perf_counter() - t0, model_rss)
    times = []
    with torch.inference_mode():
        for i in range(args.warmup + args.runs):
            start = time.perf_counter()
            out = model.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            elapsed = time.perf_counter() - start
            if i >= args.warmup:
                times.append(elapsed)
            del out
    _report(times, model_rss)
    return 0


def _transformer_and_inputs(args: argparse.Namespace, meta: dict, tensors: dict) -> tuple:
    """The file's transformer on `--device` in `--dtype`, its `input.*` tensors, call, device and dtype."""
    component = generate.COMPONENTS["transformer"]
    config = json.loads(meta["config"])
    call = json.loads(meta.get("call") or "{}")
    device = torch.device(args.device)
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    model = generate.build_from_checkpoint(
        generate.configurator_for(component, call), component.sd_ops, config, tensors
    )
    model = model.to(device=device, dtype=dtype).eval()
    return model, generate.split_io(tensors, "input"), call, device, dtype


def _time_transformer_runs(args: argparse.Namespace, device: torch.device, t0: float, run: Any) -> int:
    """Times `run()` `--warmup` + `--runs` times (synchronising a CUDA device around each) and reports."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    model_rss = current_rss_mb()
    LOG.info("built the transformer in %.1f s, RSS %.0f MB", time.perf_counter() - t0, model_rss)
    times = []
    for i in range(args.warmup + args.runs):
        sync()
        start = time.perf_counter()
        out = run()
        sync()
        elapsed = time.perf_counter() - start
        LOG.info("%s %d: %.3f s", "warm-up" if i < args.warmup else "run", i, elapsed)
        if i >= args.warmup:
            times.append(elapsed)
        del out
    _report(times, model_rss)
    return 0


def bench_transformer(args: argparse.Namespace, meta: dict, tensors: dict, t0: float) -> int:
    """One LTXModel velocity forward of both streams (`ltx bench dit-block`), on `--device` in `--dtype`
    (bf16 on CUDA as the pipelines run it; sigma and timesteps stay float32)."""
    from ltx_core.model.transformer import Modality

    model, inputs, call, device, dtype = _transformer_and_inputs(args, meta, tensors)
    del tensors
    gc.collect()

    def modality(name: str) -> Modality:
        get = lambda k: inputs[f"{name}_{k}"].to(device)  # noqa: E731
        return Modality(
            latent=get("latent").to(dtype),
            sigma=get("sigma").float(),
            timesteps=get("timesteps").float(),
            positions=get("positions").to(dtype),
            context=get("context").to(dtype),
            enabled=True,
            context_mask=None,
            attention_mask=None,
        )

    video, audio = modality("video"), modality("audio")
    perturbations = ref_compat.batched_perturbations(None, 1, len(model.transformer_blocks), dtype)
    with torch.inference_mode():
        return _time_transformer_runs(args, device, t0, lambda: model(video, audio, perturbations))


def bench_step(args: argparse.Namespace, meta: dict, tensors: dict, t0: float) -> int:
    """One step of a `denoise_loop` file's loop (`ltx bench step`): the reference's noised initial state, every
    guidance pass and the Euler update, the file's noise draws replayed, on `--device` in `--dtype`."""
    model, inputs, call, device, dtype = _transformer_and_inputs(args, meta, tensors)
    del tensors
    gc.collect()
    replay = []
    while f"noise_{len(replay)}" in inputs:
        replay.append(inputs[f"noise_{len(replay)}"])
    return _time_transformer_runs(
        args, device, t0, lambda: generate.run_denoise_loop(model, inputs, call, replay, torch.Generator(), device)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", help="fixture-format .safetensors file")
    parser.add_argument("--runs", type=int, required=True)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="transformer and denoise_loop only: cpu or cuda")
    parser.add_argument("--dtype", default="f32", choices=["f32", "bf16"], help="transformer and denoise_loop only")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    with safe_open(args.file, framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("component") == "gemma_text_encoder":
            return bench_gemma(args, f, meta, t0)
        if meta.get("component") == "transformer":
            return bench_transformer(args, meta, {k: f.get_tensor(k) for k in f.keys()}, t0)
        if meta.get("component") == "denoise_loop":
            return bench_step(args, meta, {k: f.get_tensor(k) for k in f.keys()}, t0)
        if args.device != "cpu" or args.dtype != "f32":
            parser.error("--device/--dtype apply to transformer and denoise_loop files only")
        component = generate.COMPONENTS[meta["component"]]
        config = json.loads(meta["config"])
        call = json.loads(meta.get("call") or "{}")
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    model = generate.build_from_checkpoint(
        generate.configurator_for(component, call), component.sd_ops, config, tensors
    )
    inputs = {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in generate.split_io(tensors, "input").items()}
    del tensors
    gc.collect()
    model_rss = current_rss_mb()
    LOG.info("built %s in %.1f s, RSS %.0f MB", component.name, time.perf_counter() - t0, model_rss)

    times = []
    for i in range(args.warmup + args.runs):
        start = time.perf_counter()
        outputs, _ = component.run(model, inputs, call, None, frozenset())
        elapsed = time.perf_counter() - start
        LOG.info("%s %d: %.3f s", "warm-up" if i < args.warmup else "run", i, elapsed)
        if i >= args.warmup:
            times.append(elapsed)
        del outputs
    print(
        json.dumps(
            {
                "median_s": round(statistics.median(times), 4),
                "times_s": [round(t, 4) for t in times],
                "model_rss_mb": round(model_rss, 1),
                "peak_rss_mb": round(peak_rss_mb(), 1),
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

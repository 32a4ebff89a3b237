#!/usr/bin/env python3
"""Time the PyTorch reference video VAE decoder on a `video_decoder` fixture (CPU, float32).

Usage: bench_vae_decode.py FIXTURE --runs N [--warmup 1] [--threads 2]

Loads the fixture like a checkpoint: metadata `config` -> VideoDecoderConfigurator (meta device), weights
`vae.decoder.*` + `vae.per_channel_statistics.*` through VAE_DECODER_COMFY_KEYS_FILTER (strict load, cast to
float32), input `input.latent`; then times VideoDecoder.forward(latent, timestep) under torch.inference_mode()
(`timestep` from the fixture's `call`; tiling in `call` is ignored: this times one plain forward). For configs
with timestep conditioning the decoder's own noise draw is part of the timed forward.

Prints exactly one JSON line on stdout:
  {"median_s": .., "times_s": [..], "model_rss_mb": .., "peak_rss_mb": ..}
model_rss_mb = VmRSS after the model is built (fixture file closed), peak_rss_mb = process peak (VmHWM).
Everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import resource
import statistics
import sys
import time

import torch
from safetensors import safe_open

from ltx_core.model.video_vae import VAE_DECODER_COMFY_KEYS_FILTER, VideoDecoderConfigurator

LOG = logging.getLogger("bench_vae_decode")


def _status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    value = _status_mb("VmHWM")
    if value is None:  # no procfs: ru_maxrss is in KiB on Linux
        value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return value


def current_rss_mb() -> float:
    value = _status_mb("VmRSS")
    return value if value is not None else float("nan")


def load_decoder(path: str) -> tuple[torch.nn.Module, torch.Tensor, dict]:
    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("component") != "video_decoder":
            raise SystemExit(f"{path}: component is {meta.get('component')!r}, expected 'video_decoder'")
        config = json.loads(meta["config"])
        call = json.loads(meta.get("call") or "{}")
        state = {}
        for key in f.keys():
            new_key = VAE_DECODER_COMFY_KEYS_FILTER.apply_to_key(key)
            if new_key is not None:
                state[new_key] = f.get_tensor(key).to(torch.float32).clone()
        latent = f.get_tensor("input.latent").to(torch.float32).clone()
    with torch.device("meta"):
        model = VideoDecoderConfigurator.from_config(config)
    model.load_state_dict(state, strict=True, assign=True)
    del state
    gc.collect()
    return model.eval(), latent, call


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("fixture", help="video_decoder fixture (.safetensors)")
    parser.add_argument("--runs", type=int, required=True, help="timed runs")
    parser.add_argument("--warmup", type=int, default=1, help="untimed warm-up runs (default 1)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be >= 1")

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    model, latent, call = load_decoder(args.fixture)
    model_rss = current_rss_mb()
    n_params = sum(p.numel() for p in model.parameters())
    LOG.info(
        "built decoder (%.1f M params) in %.1f s, latent %s, RSS %.0f MB",
        n_params / 1e6,
        time.perf_counter() - t0,
        list(latent.shape),
        model_rss,
    )
    if call.get("tiling") is not None:
        LOG.info("fixture call has tiling %s: ignored, timing a plain forward()", call["tiling"])

    timestep = None
    if call.get("timestep") is not None:
        timestep = torch.full((latent.shape[0],), float(call["timestep"]), dtype=torch.float32)

    times = []
    with torch.inference_mode():
        for i in range(args.warmup + args.runs):
            start = time.perf_counter()
            video = model(latent, timestep)
            elapsed = time.perf_counter() - start
            label = "warm-up" if i < args.warmup else "run"
            LOG.info("%s %d: %.3f s -> %s", label, i, elapsed, list(video.shape))
            if i >= args.warmup:
                times.append(elapsed)
            del video

    result = {
        "median_s": round(statistics.median(times), 4),
        "times_s": [round(t, 4) for t in times],
        "model_rss_mb": round(model_rss, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

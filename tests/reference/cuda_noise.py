"""Writes the `noise_torch_cuda` fixture: the `noise` component's draw plan (math_cases/noise.py) drawn by
`torch.Generator("cuda")` on this machine's GPU. Needs torch with CUDA and safetensors only (no ltx-core), so
it runs on a bare GPU machine:

    python3 tests/reference/cuda_noise.py --seed 0 --out DIR
    ltx parity DIR/noise_torch_cuda.safetensors

The file records the GPU's multiprocessor count and threads per multiprocessor, which set torch's launch grid
and so the layout of the values; the Rust side draws for that layout. The values themselves come from the GPU's
hardware sin/cos, which the Rust side approximates with libm (tolerance 5e-6 abs, docs/parity.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

SCRIPT_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPT_DIR))
sys.path.insert(0, str(SCRIPT_DIR / "math_cases"))

from fixture_common import CaseContext  # noqa: E402
import noise as noise_cases  # noqa: E402  (math_cases/noise.py, without the package's ltx-core imports)

CASE_NAME = "noise_torch_cuda"
OFFSET = 123  # the noise component's range, see math_cases/__init__.py



def _ltx_core_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("ltx-core")
    except metadata.PackageNotFoundError:
        return "none"

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("cuda_noise.py needs a CUDA device")
    ctx = CaseContext(seed=args.seed, offset=OFFSET, full_size=False)
    result = noise_cases.cuda_noise_fixture(ctx)
    metadata = {
        "component": result.component,
        "config": json.dumps(result.config, sort_keys=True),
        "call": json.dumps(result.call, sort_keys=True),
        "atol": result.atol,
        "rtol": result.rtol,
        "case": "torch.Generator('cuda') randn: the noise plan on " + result.extra_metadata["cuda_device"],
        "seed": str(args.seed),
        "generator": "tests/reference/cuda_noise.py",
        # torch alone makes this fixture; the harness accepts "none" for noise fixtures only
        "reference_version": _ltx_core_version(),
        "torch_version": torch.__version__.split("+")[0],
        **result.extra_metadata,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{CASE_NAME}.safetensors"
    save_file({k: result.tensors[k] for k in sorted(result.tensors)}, str(path), metadata=metadata)
    print(json.dumps({"path": str(path), "call": result.call}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

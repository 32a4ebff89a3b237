#!/usr/bin/env bash
# Builds `ltx` with the CUDA backend on a machine without a GPU or a system CUDA toolkit: the CUDA
# 13.0 compiler comes from PyPI wheels in a venv under target/, the kernels are compiled for one
# compute capability (default 90: H100/H200; 89: L4/RTX 40xx; 86: RTX 30xx; 120: RTX 50xx).
#
#   scripts/build-cuda.sh [COMPUTE_CAP]     -> target/cuda/release/ltx
#
# 13.0 is pinned, nvvm and crt with it: a driver of the 580 series (CUDA 13.0) cannot load PTX from
# a newer compiler, and an unpinned nvvm/crt pulls the newest, whose PTX this ptxas rejects. The
# binary loads the driver, cuBLAS and cuRAND at run time (from the system or from torch's wheels on
# LD_LIBRARY_PATH).
set -euo pipefail

cap="${1:-90}"
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/target/cuda-venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q \
  "nvidia-cuda-nvcc==13.0.*" "nvidia-nvvm==13.0.*" "nvidia-cuda-crt==13.0.*" \
  "nvidia-cuda-runtime==13.0.*" "nvidia-cuda-cccl==13.0.*"
cuda_root="$("$venv/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')"
# the runtime wheel ships only the versioned library
if [ ! -e "$cuda_root/lib/libcudart.so" ]; then
  ln -s libcudart.so.13 "$cuda_root/lib/libcudart.so"
fi

export CUDA_ROOT="$cuda_root" CUDA_PATH="$cuda_root" CUDA_TOOLKIT_ROOT_DIR="$cuda_root"
export PATH="$cuda_root/bin:$PATH"
export CUDA_COMPUTE_CAP="$cap"
export LIBRARY_PATH="$cuda_root/lib${LIBRARY_PATH:+:$LIBRARY_PATH}"
cd "$root"
cargo build --release -p ltx-cli --features cuda --target-dir target/cuda
echo "built $root/target/cuda/release/ltx for compute capability $cap"

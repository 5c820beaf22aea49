#!/usr/bin/env bash
# Install the libtorch that tch 0.24.0 links against, from PyPI (pytorch.org is not needed).
#
# PyPI's torch==2.11.0 Linux wheel is the +cu130 build. On a CPU machine libtorch_cpu.so only
# needs two small CUDA runtime libraries besides itself (libcudart.so.13, libcupti.so.13); they
# land in <dest>/nvidia/cu13/lib, where the wheel's RPATH ($ORIGIN/../../nvidia/cu13/lib) looks.
# ~544 MB download, ~1.2 GB on disk, cached per user and shared by every clone on the machine;
# `.libtorch` in the repository is a symlink to the cache. Idempotent: a complete install is
# reused, a broken one is replaced.
set -euo pipefail
TORCH_VERSION=2.11.0     # tch 0.24.0's torch-sys is built for exactly this libtorch
CUDART_VERSION=13.0.96   # = cuda-toolkit[cudart]==13.0.2, as pinned by torch 2.11.0
CUPTI_VERSION=13.0.85    # = cuda-toolkit[cupti]==13.0.2
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${LIBTORCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tch-libtorch}"
DEST="$CACHE/torch-$TORCH_VERSION"

verify() {
  local dir="$1"
  [ -f "$dir/torch/lib/libtorch_cpu.so" ] || { echo "missing $dir/torch/lib/libtorch_cpu.so" >&2; return 1; }
  [ -f "$dir/torch/include/torch/csrc/api/include/torch/torch.h" ] || { echo "missing torch headers in $dir" >&2; return 1; }
  # Every NEEDED library of libtorch_cpu.so must resolve (libtorch_cuda.so's need not on a CPU box).
  if ldd "$dir/torch/lib/libtorch_cpu.so" | grep "not found" >&2; then
    echo "libtorch_cpu.so has unresolved dependencies in $dir" >&2; return 1
  fi
  grep -q "__version__ = '$TORCH_VERSION" "$dir/torch/version.py" ||
    { echo "$dir holds another torch version than $TORCH_VERSION" >&2; return 1; }
}

if [ ! -f "$DEST/.complete" ] || ! verify "$DEST" 2>/dev/null; then
  mkdir -p "$CACHE"
  rm -rf "$DEST.tmp"
  python3 -m pip install --quiet --no-deps --no-compile --disable-pip-version-check \
    --root-user-action=ignore --target "$DEST.tmp" \
    "torch==$TORCH_VERSION" \
    "nvidia-cuda-runtime==$CUDART_VERSION" \
    "nvidia-cuda-cupti==$CUPTI_VERSION"
  verify "$DEST.tmp"
  touch "$DEST.tmp/.complete"
  rm -rf "$DEST"
  mv "$DEST.tmp" "$DEST"
fi
ln -sfn "$DEST" "$ROOT/.libtorch"
echo "libtorch $TORCH_VERSION: $ROOT/.libtorch -> $DEST"

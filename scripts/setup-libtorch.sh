#!/usr/bin/env bash
# Install the libtorch that tch 0.24.0 links against, from PyPI (pytorch.org is not needed), and
# on a GPU machine the CUDA libraries its CUDA backend needs.
#
# PyPI's torch==2.11.0 Linux wheel is the +cu130 build. On a CPU machine libtorch_cpu.so only
# needs two small CUDA runtime libraries besides itself (libcudart.so.13, libcupti.so.13); they
# land in <dest>/nvidia/cu13/lib, where the wheel's RPATH ($ORIGIN/../../nvidia/*/lib) looks.
# ~544 MB download, ~1.2 GB on disk, cached per user and shared by every clone on the machine;
# `.libtorch` in the repository is a symlink to the cache.
#
# The CUDA backend (libtorch_cuda.so) also needs cuBLAS, cuDNN, cuFFT, cuRAND, cuSPARSE(Lt),
# cuFile, NCCL, NVSHMEM, nvJitLink, NVRTC, cuSOLVER: the versions torch 2.11.0's wheel pins
# (its Requires-Dist, with cuda-toolkit==13.0.2's extras resolved), about 2.7 GB on disk. They
# are installed into the same folder
#   - when an NVIDIA driver is present (`nvidia-smi` on PATH or /proc/driver/nvidia), or
#   - with GFA_CUDA=1 (e.g. to prepare a cache on a machine without a GPU);
#   - GFA_CUDA=0 skips them.
#
# Idempotent: a complete install is reused, an incomplete or damaged one is replaced. Every
# install goes to a temporary folder first and is verified (`ldd` finds every library) before
# it replaces the cache, so an interrupted or failed run leaves the previous state.
# LIBTORCH_CACHE moves the cache (default ~/.cache/tch-libtorch).
set -euo pipefail
TORCH_VERSION=2.11.0     # tch 0.24.0's torch-sys is built for exactly this libtorch
CUDART_VERSION=13.0.96   # = cuda-toolkit[cudart]==13.0.2, as pinned by torch 2.11.0
CUPTI_VERSION=13.0.85    # = cuda-toolkit[cupti]==13.0.2
# torch 2.11.0 Requires-Dist: cuda-toolkit[cublas,cudart,cufft,cufile,cupti,curand,cusolver,
# cusparse,nvjitlink,nvrtc,nvtx]==13.0.2, nvidia-cudnn-cu13==9.19.0.56,
# nvidia-cusparselt-cu13==0.8.0, nvidia-nccl-cu13==2.28.9, nvidia-nvshmem-cu13==3.4.5;
# cuda-toolkit 13.0.2 pins each extra to the versions below.
CUDA_PACKAGES=(
  nvidia-cublas==13.1.0.3
  nvidia-cuda-nvrtc==13.0.88
  nvidia-cufft==12.0.0.61
  nvidia-cufile==1.15.1.6
  nvidia-curand==10.4.0.35
  nvidia-cusolver==12.0.4.66
  nvidia-cusparse==12.6.3.3
  nvidia-nvjitlink==13.0.88
  nvidia-nvtx==13.0.85
  nvidia-cudnn-cu13==9.19.0.56
  nvidia-cusparselt-cu13==0.8.0
  nvidia-nccl-cu13==2.28.9
  nvidia-nvshmem-cu13==3.4.5
)
# The libraries of torch/lib that make up the CUDA backend (libcaffe2_nvrtc.so also needs the
# driver's libcuda.so.1, which only a GPU machine has).
CUDA_LIBS=(libtorch_cuda.so libtorch_cuda_linalg.so libc10_cuda.so libtorch_nvshmem.so libcaffe2_nvrtc.so)
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${LIBTORCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tch-libtorch}"
DEST="$CACHE/torch-$TORCH_VERSION"

say() { echo "setup-libtorch: $*"; }
die() { echo "setup-libtorch: error: $*" >&2; exit 1; }

# --- what was asked -------------------------------------------------------------------------
nvidia_driver() {
  if command -v nvidia-smi >/dev/null 2>&1; then echo "nvidia-smi is on PATH"; return 0; fi
  if [ -e /proc/driver/nvidia ]; then echo "/proc/driver/nvidia exists"; return 0; fi
  return 1
}
case "${GFA_CUDA-}" in
  "")
    if why="$(nvidia_driver)"; then
      WANT_CUDA=1; CUDA_REASON="an NVIDIA driver is present ($why)"
    else
      WANT_CUDA=0; CUDA_REASON="no NVIDIA driver found; GFA_CUDA=1 installs them anyway"
    fi ;;
  1) WANT_CUDA=1; CUDA_REASON="GFA_CUDA=1" ;;
  0) WANT_CUDA=0; CUDA_REASON="GFA_CUDA=0" ;;
  *) die "GFA_CUDA='$GFA_CUDA' is not understood. Use GFA_CUDA=1 to install the CUDA libraries, \
GFA_CUDA=0 to skip them, or leave it unset to install them when an NVIDIA driver is present." ;;
esac

# A LIBTORCH in the environment replaces the project's libtorch in cargo builds (.cargo/config.toml):
# it must be this version, or torch-sys fails with pages of C++ errors.
libtorch_version() {  # the version of a libtorch folder (pip's torch/ or the libtorch zip), or ""
  local dir="$1"
  if [ -f "$dir/version.py" ]; then
    sed -n "s/^__version__ = '\([^']*\)'.*/\1/p" "$dir/version.py" | head -1
  elif [ -f "$dir/build-version" ]; then
    head -1 "$dir/build-version"
  fi
}
if [ -n "${LIBTORCH:-}" ]; then
  [ -d "$LIBTORCH" ] || die "LIBTORCH=$LIBTORCH is not a folder. Unset LIBTORCH to build with the \
libtorch this script installs, or point it to a libtorch $TORCH_VERSION folder."
  found="$(libtorch_version "$LIBTORCH")"
  [ -n "$found" ] || die "LIBTORCH=$LIBTORCH has neither version.py nor build-version, so it is \
not a libtorch folder gfa can check. Unset LIBTORCH to build with the libtorch this script \
installs, or point it to a libtorch $TORCH_VERSION folder (pip's site-packages/torch)."
  case "$found" in
    "$TORCH_VERSION"|"$TORCH_VERSION"+*) ;;
    *) die "LIBTORCH=$LIBTORCH holds libtorch $found, but gfa builds with tch 0.24.0, which \
needs libtorch $TORCH_VERSION exactly. Unset LIBTORCH to build with the libtorch this script \
installs, or point it to a libtorch $TORCH_VERSION folder." ;;
  esac
fi

# --- checks ----------------------------------------------------------------------------------
unresolved() {  # the libraries ldd cannot find for $1, except $2 (one per line)
  ldd "$1" 2>/dev/null | awk -v skip="${2:-}" '/not found/ && $1 != skip {print $1}' | sort -u
}
verify_cpu() {
  local dir="$1" missing
  [ -f "$dir/torch/lib/libtorch_cpu.so" ] || { echo "torch/lib/libtorch_cpu.so is missing"; return 1; }
  [ -f "$dir/torch/include/torch/csrc/api/include/torch/torch.h" ] || { echo "the torch headers are missing"; return 1; }
  # Every library libtorch_cpu.so needs must resolve (libtorch_cuda.so's need not on a CPU box).
  missing="$(unresolved "$dir/torch/lib/libtorch_cpu.so")"
  [ -z "$missing" ] || { echo "libtorch_cpu.so needs $(echo $missing) (not found)"; return 1; }
  local v; v="$(libtorch_version "$dir/torch")"
  case "$v" in "$TORCH_VERSION"|"$TORCH_VERSION"+*) ;; *) echo "it holds torch '$v', not $TORCH_VERSION"; return 1 ;; esac
}
verify_cuda() {
  local dir="$1" lib missing all=""
  for lib in "${CUDA_LIBS[@]}"; do
    [ -f "$dir/torch/lib/$lib" ] || { echo "torch/lib/$lib is missing"; return 1; }
    missing="$(unresolved "$dir/torch/lib/$lib" libcuda.so.1)"
    [ -z "$missing" ] || all="$all${all:+; }$lib needs $(echo $missing)"
  done
  [ -z "$all" ] || { echo "not found: $all"; return 1; }
}
size_of() { du -sh "$@" 2>/dev/null | tail -1 | cut -f1; }
pip_install() {  # pip_install TARGET PACKAGE...
  local target="$1"; shift
  python3 -m pip install --quiet --no-deps --no-compile --disable-pip-version-check \
    --root-user-action=ignore --target "$target" "$@" \
    || die "pip could not install $* (see its message above); nothing half-installed is left in $CACHE"
}

# Temporary folders of this run are removed however it ends; the cache is only ever replaced
# by a verified folder, with a rename.
TMP_DIRS=()
cleanup() { local d; for d in "${TMP_DIRS[@]}"; do rm -rf "$d"; done; }
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$CACHE"
for left in "$DEST.tmp" "$DEST.cuda-stage" "$DEST.cuda-next" "$DEST.old"; do
  if [ -e "$left" ]; then
    say "removing $left, left over by an interrupted setup"
    rm -rf "$left"
  fi
done
# Replace $DEST by the verified folder $1 (two renames; a kill in between leaves no $DEST, and
# the next run installs again).
replace_dest() {
  if [ -e "$DEST" ]; then mv "$DEST" "$DEST.old"; fi
  mv "$1" "$DEST"
  rm -rf "$DEST.old"
}

# --- libtorch (CPU) --------------------------------------------------------------------------
if [ -f "$DEST/.complete" ] && why="$(verify_cpu "$DEST")"; then
  :
else
  if [ -e "$DEST" ] && [ ! -f "$DEST/.complete" ]; then
    say "$DEST is an incomplete install (an earlier setup did not finish); removing it"
    rm -rf "$DEST"
  elif [ -e "$DEST" ]; then
    say "$DEST is damaged ($why); removing it"
    rm -rf "$DEST"
  fi
  say "installing torch==$TORCH_VERSION (libtorch only, ~544 MB download) into $DEST"
  TMP_DIRS+=("$DEST.tmp")
  pip_install "$DEST.tmp" "torch==$TORCH_VERSION" "nvidia-cuda-runtime==$CUDART_VERSION" \
    "nvidia-cuda-cupti==$CUPTI_VERSION"
  why="$(verify_cpu "$DEST.tmp")" || die "the fresh install does not work: $why"
  touch "$DEST.tmp/.complete"
  rm -f "$DEST.tmp/.cuda-complete"
  replace_dest "$DEST.tmp"
  say "installed libtorch $TORCH_VERSION: $(size_of "$DEST")"
fi

# --- CUDA libraries --------------------------------------------------------------------------
pins="${CUDA_PACKAGES[*]}"
cuda_state=absent
if [ -f "$DEST/.cuda-complete" ]; then
  if [ "$(cat "$DEST/.cuda-complete")" != "$pins" ]; then
    cuda_state="other versions than the ones pinned here"
  elif why="$(verify_cuda "$DEST")"; then
    cuda_state=ok
  else
    cuda_state="damaged: $why"
  fi
fi
if [ "$cuda_state" = ok ]; then
  say "CUDA libraries: present ($(size_of "$DEST/nvidia") in $DEST/nvidia)"
elif [ "$WANT_CUDA" = 1 ]; then
  if [ "$cuda_state" != absent ]; then
    say "the CUDA libraries in $DEST are $cuda_state; installing them again"
  fi
  say "installing the CUDA libraries torch $TORCH_VERSION pins ($CUDA_REASON; ~2.7 GB):"
  printf '  %s\n' "${CUDA_PACKAGES[@]}"
  TMP_DIRS+=("$DEST.cuda-stage" "$DEST.cuda-next")
  pip_install "$DEST.cuda-stage" "${CUDA_PACKAGES[@]}"
  # The new install = the current one plus the staged packages, as hard links (no copy).
  cp -al "$DEST" "$DEST.cuda-next"
  cp -alf "$DEST.cuda-stage/." "$DEST.cuda-next/"
  why="$(verify_cuda "$DEST.cuda-next")" || die "the CUDA libraries do not resolve: $why"
  echo "$pins" > "$DEST.cuda-next/.cuda-complete"
  replace_dest "$DEST.cuda-next"
  say "installed the CUDA libraries: $(size_of "$DEST.cuda-stage") ($(size_of "$DEST/nvidia") in $DEST/nvidia in all)"
  say "ldd finds every library of ${CUDA_LIBS[*]} (libcuda.so.1 comes with the NVIDIA driver)"
elif [ "$cuda_state" = absent ]; then
  say "CUDA libraries: not installed ($CUDA_REASON); gfa runs on the CPU"
else
  say "CUDA libraries: $cuda_state ($CUDA_REASON, so they are left as they are); \
GFA_CUDA=1 make setup installs them again"
fi

ln -sfn "$DEST" "$ROOT/.libtorch"
echo "libtorch $TORCH_VERSION: $ROOT/.libtorch -> $DEST ($(size_of "$DEST"))"

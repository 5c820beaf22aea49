#!/usr/bin/env bash
# Where the plain training step's CPU time goes, gfa against PyTorch, with `perf record`
# (software clock, so it works in a VM) over the timed steps only (perf's control FIFO):
# gfa with and without its malloc setting (gfa_core::host_memory), PyTorch with glibc's
# defaults and with the same setting through GLIBC_TUNABLES. Prints each run's CPU ms/step and
# the share of its samples per category (scripts/profile_report.py), for
# results/bench/plain_step_profile.md. Needs perf; PROFILE_STEPS (default 20).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
VENV="${GFA_PYENV:-${XDG_CACHE_HOME:-$HOME/.cache}/gfa-pyenv}"
STEPS="${PROFILE_STEPS:-20}"
cargo build --release -p gfa-core --example profile_step
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkfifo "$tmp/ctl"
prof() {  # NAME COMMAND...
  local name=$1; shift
  PERF_CTL="$tmp/ctl" perf record -q -e cpu-clock -F 2000 -D -1 --control="fifo:$tmp/ctl" \
    -o "$tmp/$name.data" "$@" 2>/dev/null | grep "ms CPU/step"
  python3 scripts/profile_report.py "$tmp/$name.data"
}
TUN="glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647"
prof gfa_default env GFA_DEFAULT_MALLOC=1 target/release/examples/profile_step plain "$STEPS"
prof gfa target/release/examples/profile_step plain "$STEPS"
prof torch_default "$VENV/bin/python" -W ignore scripts/profile_step.py "$STEPS"
prof torch_kept env GLIBC_TUNABLES="$TUN" "$VENV/bin/python" -W ignore scripts/profile_step.py "$STEPS"

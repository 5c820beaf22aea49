#!/usr/bin/env bash
# `make bench`: gfa against the Python references, measured in one run on this machine.
# Writes results/bench/train_step.{jsonl,md} (step times of plain, exact and finite-difference
# GFA against PyTorch's exact step; the peak memory of each on preact_resnet18) and
# fd_accuracy.md (the finite-difference gradient against the exact one), channels_last.*
# (scripts/bench_layout.sh: the memory layout of the conv models), then (with a
# CIFAR-10 copy in GFA_DATA_DIR) scripts/bench_attacks.sh and scripts/bench_methods.sh write
# attacks.* and methods.*. The PyTorch side uses a cached venv
# (~/.cache/gfa-pyenv, torch==2.11.0 — the same libtorch build gfa links); it is created on
# first use. Rounds alternate gfa and PyTorch so machine drift hits both alike.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
VENV="${GFA_PYENV:-${XDG_CACHE_HOME:-$HOME/.cache}/gfa-pyenv}"
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check torch==2.11.0 torchattacks==3.5.1 safetensors numpy
fi
OUT=results/bench
mkdir -p "$OUT"
ROUNDS="${BENCH_ROUNDS:-3}"
WIDTH="${BENCH_WIDTH:-0.25}"
BATCH="${BENCH_BATCH:-128}"
STEPS="${BENCH_STEPS:-20}"
# BENCH_THREADS=N pins both sides to N intra-op threads (0: libtorch's default). On a machine
# that others share, 1 keeps a descheduled thread from stalling the other at every op.
THREADS="${BENCH_THREADS:-0}"
# BENCH_NAME=NAME writes the step tables to results/bench/NAME.{jsonl,md} instead of train_step.*
# (e.g. BENCH_THREADS=0 BENCH_NAME=train_step_default_threads keeps the one-thread tables).
NAME="${BENCH_NAME:-train_step}"
# BENCH_ONLY_STEPS=1 stops after the step and attack-batch tables (no memory, FD accuracy,
# attack and method benches).
# BENCH_PROFILE=dev reuses the test build (the compute is libtorch's either way).
PROFILE="${BENCH_PROFILE:-release}"
if [ "$PROFILE" = dev ]; then
  cargo build -p gfa-core --example bench_train_step --example fd_accuracy
  cargo build -p gfa-attacks --example bench_pgd_step
  BIN=target/debug/examples/bench_train_step
else
  cargo build --release -p gfa-core --example bench_train_step --example fd_accuracy
  cargo build --release -p gfa-attacks --example bench_pgd_step
  BIN=target/release/examples/bench_train_step
fi
PGD_BIN="$(dirname "$BIN")/bench_pgd_step"
raw="$OUT/$NAME.jsonl"
: > "$raw.tmp"
# Each row records the commit it measured (with "+" when the tree had uncommitted changes).
rev="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo +)"
for r in $(seq "$ROUNDS"); do
  echo "round $r/$ROUNDS" >&2
  "$BIN" "$WIDTH" "$BATCH" "$STEPS" "$THREADS" | sed "s/^{/{\"round\": $r, \"git\": \"$rev\", /" >> "$raw.tmp"
  # One PGD-10 attack batch (torchattacks' preset); its PyTorch counterpart is the last line
  # of bench_pytorch.py (torchattacks.PGD).
  "$PGD_BIN" "$WIDTH" "$BATCH" "${BENCH_ATTACK_REPS:-10}" "$THREADS" | sed "s/^{/{\"round\": $r, \"git\": \"$rev\", /" >> "$raw.tmp"
  "$VENV/bin/python" scripts/bench_pytorch.py --width "$WIDTH" --batch "$BATCH" --steps "$STEPS" --threads "$THREADS" \
    --attack-reps "${BENCH_ATTACK_REPS:-10}" \
    | sed "s/^{/{\"round\": $r, \"git\": \"$rev\", /" >> "$raw.tmp"
done
# Peak memory (RSS) of the exact and the finite-difference GFA step on a ResNet, one process per
# configuration so that each peak is its own. BENCH_MEMORY=0 skips it.
if [ "${BENCH_MEMORY:-1}" != 0 ]; then
  MEM_ARCH="${BENCH_MEM_ARCH:-preact_resnet18}"
  MEM_BATCH="${BENCH_MEM_BATCH:-128}"
  MEM_STEPS="${BENCH_MEM_STEPS:-2}"
  for case in plain first first_fd deep deep_fd; do
    echo "memory: $MEM_ARCH $case, batch $MEM_BATCH" >&2
    "$BIN" --memory "$MEM_ARCH" "$case" "$MEM_BATCH" "$MEM_STEPS" \
      | sed "s/^{/{\"git\": \"$rev\", /" >> "$raw.tmp"
  done
fi
mv "$raw.tmp" "$raw"
python3 scripts/bench_report.py "$raw" "$PROFILE" > "$OUT/$NAME.md.tmp"
mv "$OUT/$NAME.md.tmp" "$OUT/$NAME.md"
cat "$OUT/$NAME.md"
[ "${BENCH_ONLY_STEPS:-0}" = 1 ] && exit 0
# The finite-difference GFA gradient against the exact one, per step.
"$(dirname "$BIN")/fd_accuracy" > "$OUT/fd_accuracy.md.tmp"
mv "$OUT/fd_accuracy.md.tmp" "$OUT/fd_accuracy.md"
# Channels last against the default layout for the conv models (results/bench/channels_last.*).
bash scripts/bench_layout.sh
if [ -n "${GFA_DATA_DIR:-}" ]; then
  cargo build --release -p gfa-exp
  bash scripts/bench_methods.sh
  bash scripts/bench_attacks.sh
else
  echo "GFA_DATA_DIR not set: attack and method benches skipped" >&2
fi

#!/usr/bin/env bash
# gfa on a CUDA GPU, checked in one command (a few minutes on one GPU):
#   1. `gfa doctor`: libtorch, CPU code path, CUDA backend, GPUs;
#   2. `gfa cuda-check`: gfa on CUDA against gfa on the CPU on the same weights and points
#      (training loss curve within 1 %, logits and GFA value per tap to 1e-4, FGSM and PGD-20
#      robust accuracy within one point in 500), then gfa's training step (plain, GFA-first,
#      GFA-deep, the GFA ones also with the finite-difference gradient) and APGD-CE timed on
#      the GPU;
#   3. scripts/gpu_check_torch.py: the same timings with PyTorch on the same GPU, weights and
#      points;
#   4. channels last against the default memory layout for the conv models
#      (results/bench/channels_last_cuda.{jsonl,md}, its own step below);
#   5. results/bench/gpu.md and results/bench/gpu.jsonl (scripts/gpu_check_report.py).
# On a machine without a usable GPU it says which parts it skipped and exits 0, writing
# nothing under results/ (GPU_CHECK_DRY_RUN=1 runs every step on the CPU instead, into a
# temporary folder, to check the plumbing).
#
# Needs no Rust toolchain: only a gfa binary (x86-64 Linux, glibc >= 2.34) and the machine's
# own torch 2.11.0, e.g. on a GPU box where PyTorch lives in /opt/torch/.venv:
#
#   make build                         # where Rust is; then copy target/release/gfa over
#   T=/opt/torch/.venv/lib/python3.12/site-packages/torch/lib
#   LD_LIBRARY_PATH=$T GFA=./gfa PYTHON=/opt/torch/.venv/bin/python3 bash scripts/gpu-check.sh
#
# LD_LIBRARY_PATH makes the binary load that torch's libtorch (its CUDA libraries come with
# its nvidia-* packages); on a machine set up with `make setup` (an NVIDIA driver present, or
# GFA_CUDA=1) `make gpu-check` is enough.
# Env: GFA (default target/release/gfa), PYTHON (a python3 with torch 2.11.0 built for CUDA;
# default python3), AUTOATTACK_DIR (a checkout of fra31/auto-attack for the APGD-CE reference;
# else torchattacks' APGD if installed, else skipped), GPU_CHECK_N (points, default 500),
# GPU_CHECK_STEPS (timed training steps, default 20), GPU_CHECK_OUT (default results/bench).
# GPU_CHECK_PRECISION (fp32 or tf32, default auto: tf32 on the GPU; the comparisons run at fp32
# whatever it says, plus one of the logits at tf32 within a derived bound when it means tf32;
# the timings at it; docs/numerics.md), GPU_CHECK_DETERMINISTIC=1 (--deterministic),
# GPU_CHECK_TIMEOUT (seconds for `gfa cuda-check`, default 360; PyTorch gets 100, the channels-
# last bench what is left): the whole check stays within GPU_CHECK_BUDGET seconds (default 470,
# under 8 minutes), each step stopped when the budget runs out.
# `make gpu-check GFA_BIN=./gfa` runs this with a prebuilt binary, without cargo or Rust.
# Exit code 1 when CUDA disagrees with the CPU beyond a bound; 2 when `gfa cuda-check` failed
# otherwise (an error, a crash, a timeout: the script says which), which is not a disagreement.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
GFA="${GFA:-target/release/gfa}"
PYTHON="${PYTHON:-python3}"
N="${GPU_CHECK_N:-500}"
STEPS="${GPU_CHECK_STEPS:-20}"
OUT="${GPU_CHECK_OUT:-results/bench}"
DRY="${GPU_CHECK_DRY_RUN:-0}"
BUDGET="${GPU_CHECK_BUDGET:-470}"
PRECISION="${GPU_CHECK_PRECISION:-auto}"
DETERMINISTIC="${GPU_CHECK_DETERMINISTIC:-0}"
[ -x "$GFA" ] || { echo "gpu-check: no gfa binary at $GFA: run \`make build\`, or set GFA=<path> (make gpu-check GFA_BIN=<path>)" >&2; exit 2; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# Exit code 1 means a disagreement and nothing else: any step of this script that fails
# unexpectedly ends it with 2.
trap 'echo "gpu-check: a step failed (line $LINENO, exit $?): not a disagreement" >&2; exit 2' ERR
jsonl="$tmp/gpu.jsonl"
skip() {  # skip WHAT WHY
  echo "skipped: $1 ($2)"
  printf '{"kind": "skipped", "what": "%s", "why": "%s"}\n' "$1" "${2//\"/\'}" >> "$jsonl"
}
# What `gfa cuda-check`'s exit status means: a disagreement (3) is not a crash.
cuda_check_verdict() {  # cuda_check_verdict STATUS LIMIT
  if [ "$1" = 0 ]; then echo "CUDA agrees with the CPU within every bound"
  elif [ "$1" = 3 ]; then echo "CUDA disagrees with the CPU beyond a bound (the FAIL rows of the table above)"
  elif [ "$1" = 124 ]; then echo "gfa cuda-check ran past its $2 s and was stopped: not a disagreement"
  elif [ "$1" -gt 128 ] && [ "$1" -le 192 ]; then
    echo "gfa cuda-check crashed (killed by signal $(( $1 - 128 )), SIG$(kill -l $(( $1 - 128 )) 2>/dev/null || echo '?')): not a disagreement"
  else echo "gfa cuda-check failed with exit code $1 (an error: its message above says which): not a disagreement"
  fi
}
t0=$SECONDS
left() {  # left CAP: seconds of the budget left, at most CAP (at least 1)
  local l=$((BUDGET - (SECONDS - t0)))
  [ "$l" -gt "$1" ] && l=$1
  [ "$l" -lt 1 ] && l=1
  echo "$l"
}
echo "== numerics: --precision $PRECISION$([ "$DETERMINISTIC" = 1 ] && echo ' --deterministic') (docs/numerics.md)"

echo "== gfa doctor"
doctor_failed() {
  echo "gpu-check: \`$GFA doctor\` failed (exit $1): the binary or its libtorch does not load (LD_LIBRARY_PATH?); not a disagreement" >&2
  exit 2
}
"$GFA" doctor || doctor_failed $?
doctor_json="$("$GFA" doctor --json)" || doctor_failed $?
echo "$doctor_json" | sed 's/^{/{"kind": "doctor", /' >> "$jsonl"
field() {  # field REGEX CUT-ARGS...: the first match of REGEX in the JSON lines, cut
  local re="$1"; shift
  { grep -o "$re" "$jsonl" || true; } | head -1 | cut "$@"
}
devices="$(field '"torch_cuda_devices":[0-9]*' -d: -f2)"
backend="$(field '"cuda_backend":"[^"]*"' -d'"' -f4)"
rev="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
printf '{"kind": "run", "command": "bash scripts/gpu-check.sh", "git": "%s", "date": "%s", "precision": "%s", "deterministic": %s}\n' \
  "$rev" "$(date -u +%Y-%m-%dT%H:%MZ)" "$PRECISION" "$([ "$DETERMINISTIC" = 1 ] && echo true || echo false)" >> "$jsonl"

if [ "${devices:-0}" -gt 0 ]; then
  gpu_args=()
  dev=cuda
elif [ "$DRY" = 1 ]; then
  echo "== no usable CUDA device ($backend): dry run, every step on the CPU"
  gpu_args=(--dry-run)
  dev=cpu
else
  why="no usable CUDA device: CUDA backend ${backend:-unknown}; gfa doctor above says why"
  skip "gfa on CUDA against gfa on the CPU" "$why"
  skip "gfa and PyTorch timings on the GPU" "$why"
  skip "results/bench/gpu.md and gpu.jsonl (written only when a GPU ran)" "$why"
  echo "gpu-check: nothing to check on this machine; GPU_CHECK_DRY_RUN=1 runs the steps on the CPU"
  exit 0
fi

num_args=(--precision "$PRECISION")
[ "$DETERMINISTIC" = 1 ] && num_args+=(--deterministic)
echo "== gfa ${num_args[*]} cuda-check ${gpu_args[*]}"
status=0
cuda_limit="$(left "${GPU_CHECK_TIMEOUT:-360}")"
timeout "$cuda_limit" "$GFA" "${num_args[@]}" cuda-check "${gpu_args[@]}" --n "$N" \
  --steps "$STEPS" --jsonl "$jsonl" --export "$tmp/export" || status=$?
# The precision gfa's timings ran at (auto resolved), for PyTorch's side; none when cuda-check
# stopped before writing its lines (a crash must not end this script as a disagreement would).
timed="$({ grep -o '"kind":"numerics".*' "$jsonl" || true; } | { grep -o '"precision":"[a-z0-9]*"' || true; } | head -1 | cut -d'"' -f4)"
[ -n "$timed" ] || timed=fp32
verdict="$(cuda_check_verdict "$status" "$cuda_limit")"
[ "$status" = 0 ] || echo "gpu-check: $verdict" >&2
printf '{"kind": "cuda_check", "exit": %s, "verdict": "%s"}\n' "$status" "${verdict//\"/\'}" >> "$jsonl"

echo "== PyTorch on $dev"
if "$PYTHON" -c "import sys, torch; sys.exit(0 if '$dev' == 'cpu' or torch.cuda.is_available() else 1)" 2>/dev/null; then
  timeout "$(left 100)" "$PYTHON" scripts/gpu_check_torch.py --export "$tmp/export" --device "$dev" --steps "$STEPS" \
    --precision "$timed" \
    ${AUTOATTACK_DIR:+--autoattack "$AUTOATTACK_DIR"} >> "$jsonl" \
    || skip "PyTorch timings" "scripts/gpu_check_torch.py failed (exit $?)"
else
  skip "PyTorch timings" "$PYTHON has no torch that sees the GPU (set PYTHON=...)"
fi

# ---- channels last on the GPU (memory layout, issue: grids finish sooner) -------------------
# The `bench_layout` example of gfa-attacks (`cargo build --release -p gfa-attacks --example
# bench_layout` where Rust is; copy target/release/examples/bench_layout over with gfa, or
# set LAYOUT_BIN) times a training step and an APGD-CE batch of cnn, resnet18,
# preact_resnet18 and wrn_28_10 at full size in the default layout and channels last, wall
# time after synchronizing (scripts/bench_layout.sh): results/bench/channels_last_cuda.{jsonl,md}
# with each ratio, its rounds' spread and the decision. In a dry run it runs one small size on
# the CPU into the temporary folder.
LAYOUT_BIN="${LAYOUT_BIN:-$(dirname "$GFA")/examples/bench_layout}"
if [ -x "$LAYOUT_BIN" ]; then
  echo "== channels last on $dev"
  if [ "$dev" = cuda ]; then
    layout_sizes="cnn:1:128,resnet18:1:128,preact_resnet18:1:128,wrn_28_10:1:128"
    layout_out="$OUT"
    mkdir -p "$OUT"
  else
    layout_sizes="cnn:0.25:16"
    layout_out="$tmp"
  fi
  BENCH_LAYOUT_BIN="$LAYOUT_BIN" BENCH_LAYOUT_DEVICE="$dev" BENCH_LAYOUT_SIZES="$layout_sizes" \
    BENCH_LAYOUT_NAME="channels_last_$dev" BENCH_OUT="$layout_out" \
    BENCH_LAYOUT_ROUNDS="${GPU_CHECK_LAYOUT_ROUNDS:-5}" timeout "$(left 600)" bash scripts/bench_layout.sh \
    || skip "channels last on $dev" "scripts/bench_layout.sh failed or ran out of the check's ${BUDGET} s (exit $?)"
else
  skip "channels last on $dev" "no bench_layout binary at $LAYOUT_BIN (cargo build --release -p gfa-attacks --example bench_layout; LAYOUT_BIN=...)"
fi
# ---- end of channels last --------------------------------------------------------------------

report="$("$PYTHON" scripts/gpu_check_report.py "$jsonl" 2>/dev/null || python3 scripts/gpu_check_report.py "$jsonl")"
if [ "$DRY" = 1 ] && [ "$dev" = cpu ]; then
  echo "$report"
  echo "gpu-check: dry run on the CPU done in $((SECONDS - t0)) s (nothing written under $OUT)"
else
  mkdir -p "$OUT"
  echo "$report" > "$OUT/gpu.md.tmp" && mv "$OUT/gpu.md.tmp" "$OUT/gpu.md"
  cp "$jsonl" "$OUT/gpu.jsonl.tmp" && mv "$OUT/gpu.jsonl.tmp" "$OUT/gpu.jsonl"
  echo "$report"
  echo "gpu-check: wrote $OUT/gpu.md and $OUT/gpu.jsonl in $((SECONDS - t0)) s"
fi
case "$status" in
  0) exit 0 ;;
  3) exit 1 ;;
  *) exit 2 ;;
esac

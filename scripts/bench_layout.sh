#!/usr/bin/env bash
# The memory-layout half of `make bench`: channels last against the default (contiguous)
# layout for the conv models, measured in one run on this machine (the `bench_layout` example
# of gfa-attacks): a plain training step and an APGD-CE batch of cnn, resnet18,
# preact_resnet18 and wrn_28_10, one thread, CPU time. Writes
# results/bench/channels_last.{jsonl,md} with the ratio per round, its median and spread, and
# the decision (channels last where it is faster by more than the rounds' spread).
#
# Env: BENCH_LAYOUT_ROUNDS (default 5), BENCH_LAYOUT_STEPS (timed steps per round, default 5;
# APGD-CE batches: half as many), BENCH_LAYOUT_ITERS (APGD-CE iterations, default 10),
# BENCH_LAYOUT_SIZES (arch:width:batch list, default the example's), BENCH_LAYOUT_DEVICE
# (cpu, or cuda for the GPU check), BENCH_LAYOUT_NAME (output name, default channels_last),
# BENCH_PROFILE=dev (reuse the test build).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
ROUNDS="${BENCH_LAYOUT_ROUNDS:-5}"
STEPS="${BENCH_LAYOUT_STEPS:-5}"
ITERS="${BENCH_LAYOUT_ITERS:-10}"
DEVICE="${BENCH_LAYOUT_DEVICE:-cpu}"
SIZES="${BENCH_LAYOUT_SIZES:-}"
NAME="${BENCH_LAYOUT_NAME:-channels_last}"
OUT="${BENCH_OUT:-results/bench}"
mkdir -p "$OUT"
if [ -n "${BENCH_LAYOUT_BIN:-}" ]; then
  BIN="$BENCH_LAYOUT_BIN"
elif [ "${BENCH_PROFILE:-release}" = dev ]; then
  cargo build -p gfa-attacks --example bench_layout
  BIN=target/debug/examples/bench_layout
else
  cargo build --release -p gfa-attacks --example bench_layout
  BIN=target/release/examples/bench_layout
fi
rev="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- crates 2>/dev/null || echo +)"
raw="$OUT/$NAME.jsonl"
: > "$raw.tmp"
for r in $(seq "$ROUNDS"); do
  echo "layout round $r/$ROUNDS" >&2
  "$BIN" "$r" "$STEPS" "$ITERS" "$DEVICE" $SIZES | sed "s/^{/{\"git\": \"$rev\", /" >> "$raw.tmp"
done
mv "$raw.tmp" "$raw"
python3 scripts/bench_layout_report.py "$raw" > "$OUT/$NAME.md.tmp"
mv "$OUT/$NAME.md.tmp" "$OUT/$NAME.md"
cat "$OUT/$NAME.md"

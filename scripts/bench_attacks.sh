#!/usr/bin/env bash
# The attack half of `make bench`: gfa's APGD-CE (100 iterations), DeepFool (L2) and Square (5000
# queries) against auto-attack's and torchattacks' on the same weights and CIFAR-10 test points,
# measured in one run. Writes results/bench/attacks.{jsonl,md}.
#
# Env: BENCH_N (points, default 500), BENCH_ROUNDS (default 1), BENCH_CHECKPOINT (a `gfa train`
# folder; default: train `cnn` w0.25 for 2 epochs into target/bench-model), AUTOATTACK_DIR (a
# checkout of fra31/auto-attack, not on PyPI; without it only DeepFool has a reference),
# BENCH_CHECKPOINT_LABEL (how attacks.md names the checkpoint; default its path),
# BENCH_NAME (output name under results/bench/, default attacks),
# GFA_DATA_DIR (CIFAR-10 binary folder).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
VENV="${GFA_PYENV:-${XDG_CACHE_HOME:-$HOME/.cache}/gfa-pyenv}"
GFA="${GFA:-target/release/gfa}"
DATA="${GFA_DATA_DIR:?set GFA_DATA_DIR to a CIFAR-10 binary folder (gfa data fetch)}"
N="${BENCH_N:-500}"
ROUNDS="${BENCH_ROUNDS:-1}"
CK="${BENCH_CHECKPOINT:-target/bench-model}"
OUT=results/bench
mkdir -p "$OUT"
if [ ! -f "$CK/final.safetensors" ]; then
  "$GFA" train --model cnn --width 0.25 --optimizer adam --epochs 2 --seed 0 --data "$DATA" --out "$CK"
fi
NAME="${BENCH_NAME:-attacks}"
raw="$OUT/$NAME.jsonl"
: > "$raw.tmp"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for r in $(seq "$ROUNDS"); do
  echo "round $r/$ROUNDS" >&2
  for spec in "apgd-ce linf 8/255" "deepfool l2 0.5" "square linf 8/255"; do
    set -- $spec
    rm -f "$tmp/eval.csv"
    "$GFA" eval --checkpoint "$CK" --data "$DATA" --n "$N" --attacks "$1" --norm "$2" --eps "$3" \
      --csv "$tmp/eval.csv" > /dev/null
    python3 - "$tmp/eval.csv" "$r" >> "$raw.tmp" <<'PY'
import csv, json, sys
for row in csv.DictReader(open(sys.argv[1])):
    if row["mode"] == "individual":
        print(json.dumps({"round": int(sys.argv[2]), "impl": "gfa", "attack": row["kind"],
                          "seconds": float(row["seconds"]), "n": int(row["n"]),
                          "clean_acc": float(row["clean_acc"]), "robust_acc": float(row["robust_acc"]),
                          "median_l2": float(row["median_l2"]) if row["median_l2"] else None}))
PY
  done
  "$VENV/bin/python" scripts/bench_attacks.py --checkpoint "$CK" --data "$DATA" --n "$N" \
    ${AUTOATTACK_DIR:+--autoattack "$AUTOATTACK_DIR"} | sed "s/^{/{\"round\": $r, /" >> "$raw.tmp"
done
mv "$raw.tmp" "$raw"
python3 scripts/bench_report.py attacks "$raw" "${BENCH_CHECKPOINT_LABEL:-\`$CK\`}" > "$OUT/$NAME.md.tmp"
mv "$OUT/$NAME.md.tmp" "$OUT/$NAME.md"
cat "$OUT/$NAME.md"

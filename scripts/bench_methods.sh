#!/usr/bin/env bash
# The training-method half of `make bench`: one epoch of each method of the trainer on the same
# CIFAR-10 slice, `cnn` width 0.25, batch 128, Adam, each method at its published settings
# (docs/method.md §3; gfa/gnr/gfa_pgd_at at λ = 0.3), measured in one run. The epoch cost relative to
# `standard` is read from each run's train.csv `seconds`. Writes results/bench/methods.{jsonl,md}.
#
# Env: BENCH_METHOD_N (training points, default 2560), BENCH_ROUNDS (default 1), GFA_DATA_DIR.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
GFA="${GFA:-target/release/gfa}"
DATA="${GFA_DATA_DIR:?set GFA_DATA_DIR to a CIFAR-10 binary folder (gfa data fetch)}"
N="${BENCH_METHOD_N:-2560}"
ROUNDS="${BENCH_ROUNDS:-1}"
OUT=results/bench
mkdir -p "$OUT"
raw="$OUT/methods.jsonl"
: > "$raw.tmp"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for r in $(seq "$ROUNDS"); do
  for m in standard gfa gnr pgd_at fast_at trades gradalign gfa_pgd_at; do
    echo "round $r/$ROUNDS: $m" >&2
    lam=()
    case "$m" in gfa | gnr | gfa_pgd_at) lam=(--lambda 0.3) ;; esac
    rm -rf "$tmp/$m"
    "$GFA" train --model cnn --width 0.25 --method "$m" "${lam[@]}" --optimizer adam --epochs 1 \
      --batch-size 128 --n-train "$N" --n-test 100 --seed 0 --data "$DATA" --out "$tmp/$m" > /dev/null
    python3 - "$tmp/$m/train.csv" "$r" "$m" "$N" >> "$raw.tmp" <<'PY'
import csv, json, sys
row = next(csv.DictReader(open(sys.argv[1])))
print(json.dumps({"round": int(sys.argv[2]), "method": sys.argv[3], "n_train": int(sys.argv[4]),
                  "seconds": float(row["seconds"]), "train_loss": float(row["train_loss"])}))
PY
  done
done
mv "$raw.tmp" "$raw"
python3 scripts/bench_report.py methods "$raw" > "$OUT/methods.md.tmp"
mv "$OUT/methods.md.tmp" "$OUT/methods.md"
cat "$OUT/methods.md"

#!/usr/bin/env bash
# `make fd-vs-exact`: does the finite-difference GFA gradient train like the exact one?
# quick.toml's recipe (cnn width 0.25, 5 epochs of Adam on CIFAR-10, 500 test points) with its
# two GFA runs (λ = 0.3, layers first and deep), each trained with the exact double-backprop
# gradient and with gradient = "finite_difference": four runs in results/fd_vs_exact/. The
# attack suite is cut to FGSM at 8/255 (the comparison needs clean accuracy, the test cosines of
# gfa_value.csv and the collapse check, not the attacks). Then results/bench/fd_vs_exact.md
# compares the pairs: same collapse verdict, test cosines within 0.05 at every tap, clean
# accuracy within 2 points.
#
# Extra arguments go to `gfa run` (e.g. --set train.epochs=1 for a trial; FD_OUT=… then keeps
# the committed table). GFA picks the binary (default target/release/gfa).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
GFA="${GFA:-target/release/gfa}"
RESULTS="${FD_RESULTS:-results}"
OUT="${FD_OUT:-results/bench/fd_vs_exact.md}"
methods='[
  { kind = "gfa", lambda = 0.3, layers = "first" },
  { kind = "gfa", lambda = 0.3, layers = "deep" },
  { kind = "gfa", lambda = 0.3, layers = "first", gradient = "finite_difference" },
  { kind = "gfa", lambda = 0.3, layers = "deep", gradient = "finite_difference" },
]'
args=(run experiments/quick.toml --results "$RESULTS"
  --set experiment=fd_vs_exact
  --set "grid.method=$methods"
  --set 'attacks=[{ kind = "fgsm", eps = ["8/255"] }]'
  "$@")
start=$(date +%s)
"$GFA" "${args[@]}"
minutes=$(( ($(date +%s) - start + 59) / 60 ))
mkdir -p "$(dirname "$OUT")"
python3 scripts/fd_vs_exact_report.py "$RESULTS/fd_vs_exact" \
  "scripts/fd_vs_exact.sh $*" "$minutes" > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
cat "$OUT"

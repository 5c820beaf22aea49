#!/usr/bin/env bash
# Start two `gfa run` on one small synthetic grid at the same time, N times (default 20), and
# check each trial: both exit 0, every run is trained once (one "train start" in its log.txt),
# none failed, and every CSV equals a sequential run's, timing columns (`seconds`) aside.
# Prints "K/N trials identical"; exits 1 unless K = N.
#
#   scripts/race_trials.sh 20        # uses the debug binary, built first if needed
set -euo pipefail
n=${1:-20}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build -q -p gfa-exp --bin gfa
gfa="$root/target/debug/gfa"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/race.toml" <<'TOML'
experiment = "race"
seeds = [0, 1, 2, 3]

[base]
data = { source = "synthetic", n_train = 64, n_test = 32 }
model = { arch = "mlp" }
method = { kind = "standard" }
train = { epochs = 2, batch_size = 32 }
eval = { n = 16 }

[[attacks]]
kind = "fgsm"
eps = ["8/255"]
TOML

# Every CSV under an experiment folder (per run and collected), `seconds` columns removed, as
# one sorted text (run folders named by run id, so the listing is stable).
tables() {
  python3 - "$1" <<'PY'
import csv, pathlib, sys
root = pathlib.Path(sys.argv[1])
for p in sorted(root.rglob("*.csv")):
    rows = list(csv.reader(open(p, newline="")))
    keep = [i for i, h in enumerate(rows[0]) if h != "seconds"] if rows else []
    print(f"== {p.relative_to(root)}")
    for r in rows:
        print(",".join(r[i] for i in keep))
PY
}

run() { "$gfa" --device cpu run "$work/race.toml" --results "$1" --threads 1; }

run "$work/alone" > /dev/null 2>&1
tables "$work/alone/race" > "$work/alone.txt"

same=0
for t in $(seq 1 "$n"); do
  res="$work/together$t"
  run "$res" > "$work/a.out" 2> "$work/a.err" & a=$!
  run "$res" > "$work/b.out" 2> "$work/b.err" & b=$!
  ok=1
  wait "$a" || { ok=0; echo "trial $t: runner A exited $?"; cat "$work/a.err"; }
  wait "$b" || { ok=0; echo "trial $t: runner B exited $?"; cat "$work/b.err"; }
  done_runs=$(cat "$work/a.out" "$work/b.out" | sed -n 's/^\([0-9]*\) runs done,.* \([0-9]*\) failed,.*/\1 \2/p' \
    | awk '{d += $1; f += $2} END {print d, f}')
  if [ "$done_runs" != "4 0" ]; then
    ok=0; echo "trial $t: (runs done, failed) summed over both runners = $done_runs, want 4 0"
  fi
  for log in "$res"/race/*/log.txt; do
    starts=$(grep -c ' train start' "$log" || true)
    [ "$starts" = 1 ] || { ok=0; echo "trial $t: $log has $starts trainings"; }
  done
  tables "$res/race" > "$work/together.txt"
  if ! diff -q "$work/alone.txt" "$work/together.txt" > /dev/null; then
    ok=0; echo "trial $t: CSVs differ from the sequential run:"
    diff "$work/alone.txt" "$work/together.txt" | head -20
  fi
  same=$((same + ok))
done
echo "$same/$n trials identical"
[ "$same" = "$n" ]

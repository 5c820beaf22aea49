#!/usr/bin/env bash
# `gfa run --jobs 2` (1 libtorch thread per worker) against `--jobs 1` (2 threads) on a reduced
# experiments/quick.toml: wall time of each and which CSV columns differ between the two.
#
#   GFA_DATA_DIR=<CIFAR-10 folder> scripts/bench_jobs.sh
#
# The reduction (the same for both): one epoch on the first 2,000 training images, the attack
# suite on the first 100 test points. Results go to two temporary folders, removed at the end.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
: "${GFA_DATA_DIR:?set GFA_DATA_DIR to the CIFAR-10 folder (cifar-10-batches-bin)}"
export GFA_DATA_DIR
cargo build --release -q -p gfa-exp --bin gfa
gfa="$root/target/release/gfa"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
set_args=(--set base.train.epochs=1 --set base.data.n_train=2000 --set base.eval.n=100)

timed() {  # timed <label> <results> <flags…>: runs gfa, prints "<label> <seconds>"
  local label=$1 res=$2; shift 2
  local t0 t1
  t0=$(date +%s.%N)
  "$gfa" --device cpu run experiments/quick.toml "${set_args[@]}" --results "$res" --quiet "$@" \
    > "$work/$label.out" 2> "$work/$label.err" || { cat "$work/$label.out" "$work/$label.err"; exit 1; }
  t1=$(date +%s.%N)
  python3 -c "print(f'$label {float($t1) - float($t0):.1f} s')"
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "command: gfa run experiments/quick.toml ${set_args[*]} --quiet"
timed "jobs1_threads2" "$work/j1" --jobs 1 --threads 2
timed "jobs2_threads1" "$work/j2" --jobs 2 --threads 1

# Per collected CSV: the columns whose values differ (rows matched by position; both runs write
# their rows in the grid's order). `seconds` is wall time and differs by nature.
python3 - "$work/j1/quick" "$work/j2/quick" <<'PY'
import csv, pathlib, sys
a, b = map(pathlib.Path, sys.argv[1:])
names = sorted(p.name for p in a.glob("*.csv"))
identical = True
for name in names:
    ra = list(csv.DictReader(open(a / name, newline="")))
    rb = list(csv.DictReader(open(b / name, newline="")))
    if len(ra) != len(rb):
        print(f"{name}: {len(ra)} rows against {len(rb)}")
        identical = False
        continue
    cols = ra[0].keys() if ra else []
    diff = [c for c in cols if any(x[c] != y[c] for x, y in zip(ra, rb))]
    others = [c for c in diff if c != "seconds"]
    if others:
        identical = False
    print(f"{name}: {len(ra)} rows; differing columns: {', '.join(diff) or 'none'}")
print("verdict: " + ("identical apart from seconds" if identical else "values differ (see above)"))
PY

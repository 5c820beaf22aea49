#!/usr/bin/env bash
# gfa on a real Slurm: a one-node cluster on this machine, the script `gfa plan --emit slurm`
# writes, submitted as a user would, and its CSVs against a local run of the same grid.
#
#   make slurm-check            # or: bash scripts/slurm-check.sh
#
# Needs a Debian-like machine and root: installs `slurm-wlm` and `munge` with apt-get when
# they are absent. No systemd: the script starts munged, slurmctld and slurmd itself, with
# their sockets, spool, state and logs in a fresh folder (SLURM_CHECK_DIR, default a new
# temporary one), on ports 16817/16818 (SLURM_CHECK_PORT: the first of two), and stops them by
# pid when it ends. The node has this machine's CPU count and memory (`slurmd -C`).
#
# Steps, each printed as one "pass"/"fail" line:
#  1. the cluster answers `sinfo` and runs a job;
#  2. a local `gfa run` of a 4-run synthetic grid (3 epochs each);
#  3. `gfa plan --emit slurm` with relative paths, submitted with `sbatch` from another folder
#     with a PATH that has no gfa: every task completes, every task log holds epoch lines, and
#     every CSV equals the local run's, the timing columns (`seconds`) aside;
#  4. the same grid in a fresh results folder: one task `scancel`led mid-training, its run
#     marked interrupted; the script resubmitted: the grid finishes and its CSVs equal the local
#     run's again; the two submissions' task logs are separate files.
# Exits 1 when a step fails; the daemons' logs and the task logs are kept in the folder then.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
t0=$(date +%s)
failed=0
pass() { echo "pass: $*"; }
fail() { echo "FAIL: $*"; failed=1; }
elapsed() { echo "$(($(date +%s) - t0)) s"; }

if ! command -v slurmctld > /dev/null || ! command -v munged > /dev/null; then
  [ "$(id -u)" = 0 ] || { echo "slurm-check: slurm-wlm and munge are not installed, and installing them needs root" >&2; exit 2; }
  echo "installing slurm-wlm and munge (apt-get)"
  apt-get update -q > /dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge > /dev/null
fi
[ "$(id -u)" = 0 ] || { echo "slurm-check: needs root (slurmd starts the tasks as their user)" >&2; exit 2; }

# The debug binary (what `make test` builds; a release build of gfa-exp takes minutes on 2
# cores), or GFA_BIN.
if [ -z "${GFA_BIN:-}" ]; then
  cargo build -q --bin gfa
  GFA_BIN="$root/target/debug/gfa"
fi
gfa=$GFA_BIN

work=${SLURM_CHECK_DIR:-$(mktemp -d /tmp/gfa-slurm-check.XXXXXX)}
mkdir -p "$work"/{state,spool,log,run,submit,plan}
work=$(cd "$work" && pwd)
port=${SLURM_CHECK_PORT:-16817}
host=$(hostname -s)

# ---- the cluster --------------------------------------------------------------------------
pids=()
stop_cluster() {
  # The daemons this script started, by the pids they wrote, in reverse order of their start.
  for f in "$work/run/slurmd.pid" "$work/run/slurmctld.pid" "$work/run/munged.pid"; do
    [ -s "$f" ] || continue
    pid=$(cat "$f")
    kill "$pid" 2> /dev/null || continue
    for _ in $(seq 50); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
  done
}
finish() {
  stop_cluster
  if [ "$failed" = 0 ] && [ -z "${SLURM_CHECK_DIR:-}" ]; then
    rm -rf "$work"
  else
    echo "slurm-check: logs kept in $work"
  fi
}
trap finish EXIT

cp /etc/munge/munge.key "$work/run/munge.key" 2> /dev/null \
  || dd if=/dev/urandom bs=1 count=1024 of="$work/run/munge.key" status=none
chmod 700 "$work/run"
chmod 400 "$work/run/munge.key"
munged --force --socket="$work/run/munge.sock" --key-file="$work/run/munge.key" \
  --pid-file="$work/run/munged.pid" --log-file="$work/log/munged.log" \
  --seed-file="$work/run/munged.seed"

node=$(slurmd -C | head -1)    # NodeName=<host> CPUs=… RealMemory=…
cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<< "$node")
cat > "$work/slurm.conf" << EOF
ClusterName=gfacheck
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$work/run/munge.sock
CredType=cred/munge
SlurmctldPort=$port
SlurmdPort=$((port + 1))
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/run/slurmctld.pid
SlurmdPidFile=$work/run/slurmd.pid
SlurmctldLogFile=$work/log/slurmctld.log
SlurmdLogFile=$work/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
KillWait=10
MinJobAge=300
$node State=UNKNOWN
PartitionName=check Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$work/slurm.conf"
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
state=""
for _ in $(seq 60); do
  state=$(sinfo -h -o %T 2> /dev/null || true)
  [ "$state" = idle ] && break
  sleep 0.5
done
probe=$(sbatch --wait --quiet --output="$work/log/probe.log" --wrap 'echo hello' 2>&1 && cat "$work/log/probe.log" || true)
if [ "$state" = idle ] && [ "$probe" = hello ]; then
  pass "1. one-node cluster up ($node) and running a job ($(elapsed))"
else
  fail "1. cluster: sinfo says '$state', a job printed '$probe'; see $work/log"
  exit 1
fi

# ---- the grid, locally ----------------------------------------------------------------------
cat > "$work/plan/grid.toml" << 'TOML'
experiment = "slurmcheck"
seeds = [0, 1]

[base]
data = { source = "synthetic", n_train = 256, n_test = 64 }
model = { arch = "cnn", width = 0.125 }
train = { epochs = 3, batch_size = 64, optimizer = { kind = "sgd", lr = 0.05 } }
eval = { n = 64 }

[grid]
method = [{ kind = "standard" }, { kind = "gfa", lambda = 0.3 }]

[[attacks]]
kind = "pgd"
eps = ["8/255"]
steps = 5
TOML
"$gfa" --device cpu run "$work/plan/grid.toml" --results "$work/local" --threads 1 --quiet \
  > "$work/log/local.out" 2>&1
pass "2. local run of the 4-run grid ($(elapsed))"

# Every CSV under an experiment folder (per run and collected), `seconds` columns removed, as
# one sorted text; temporary files of an interrupted write are not results.
tables() {
  python3 - "$1" << 'PY'
import csv, pathlib, sys
root = pathlib.Path(sys.argv[1])
for p in sorted(root.rglob("*.csv")):
    if p.name.startswith(".tmp."):
        continue
    rows = list(csv.reader(open(p, newline="")))
    keep = [i for i, h in enumerate(rows[0]) if h != "seconds"] if rows else []
    print(f"== {p.relative_to(root)}")
    for r in rows:
        print(",".join(r[i] for i in keep))
PY
}
tables "$work/local/slurmcheck" > "$work/local.txt"
ncsv=$(grep -c '^== ' "$work/local.txt")
same_csvs() { # results folder, step name
  tables "$1/slurmcheck" > "$1.txt"
  if diff -q "$work/local.txt" "$1.txt" > /dev/null; then
    pass "$2: all $ncsv CSVs equal the local run's, seconds aside ($(elapsed))"
  else
    fail "$2: CSVs differ from the local run's:"
    diff "$work/local.txt" "$1.txt" | head -20
  fi
}

# A clean PATH without gfa: the script must name its binary itself.
bare=(env PATH=/usr/local/bin:/usr/bin:/bin)

# ---- 3. the emitted script, submitted from another folder ------------------------------------
(cd "$work/plan" && "$gfa" --device cpu plan grid.toml --results res1 --emit slurm > /dev/null)
script1="$work/plan/res1/slurmcheck/slurm.sh"
(cd "$work/submit" && "${bare[@]}" sbatch --wait --quiet "$script1") || fail "3. sbatch --wait exited $?"
logs=("$work"/plan/res1/slurmcheck/slurm-logs/*.log)
ok=1
for l in "${logs[@]}"; do grep -q 'epoch 3/3' "$l" || { ok=0; echo "no epoch line in $l"; }; done
if [ "$ok" = 1 ] && [ "${#logs[@]}" = 4 ]; then
  pass "3. emitted script submitted from another folder, gfa not on PATH: 4 tasks, each log with its epoch lines"
else
  fail "3. task logs: ${#logs[@]} files (want 4), epoch lines missing"
fi
same_csvs "$work/plan/res1" "3. slurm run"

# ---- 4. a task cancelled mid-training, then the script resubmitted ---------------------------
(cd "$work/plan" && "$gfa" --device cpu plan grid.toml --results res2 --emit slurm > /dev/null)
exp2="$work/plan/res2/slurmcheck"
job=$(cd "$work/submit" && "${bare[@]}" sbatch --parsable "$exp2/slurm.sh")
victim=""
for _ in $(seq 600); do
  for log in "$exp2"/*/log.txt; do
    [ -f "$log" ] || continue
    if grep -q 'train epoch 1/3' "$log" && ! grep -q 'train done' "$log"; then
      victim=$(basename "$(dirname "$log")")
      break 2
    fi
  done
  sleep 0.1
done
if [ -z "$victim" ]; then
  fail "4. no run seen mid-training"
  exit 1
fi
# The array task of the run: its place in the script's list of run ids.
task=$(sed -n 's/^IDS=(\(.*\))$/\1/p' "$exp2/slurm.sh" | tr ' ' '\n' | grep -n "^$victim\$" | cut -d: -f1)
scancel "${job}_${task}"
for _ in $(seq 100); do
  squeue -h -j "${job}_${task}" 2> /dev/null | grep -q . || break
  sleep 0.2
done
status=$(head -1 "$exp2/$victim/status")
if [ "$status" = interrupted ] && grep -q 'interrupted' "$exp2/$victim/log.txt"; then
  pass "4. task ${job}_${task} cancelled during run $victim's training: the run is marked interrupted ($(elapsed))"
else
  fail "4. after scancel, run $victim's status is '$status' (want interrupted)"
fi
while squeue -h -j "$job" 2> /dev/null | grep -q .; do sleep 0.5; done
job2=$(cd "$work/submit" && "${bare[@]}" sbatch --parsable --wait "$exp2/slurm.sh") \
  || fail "4. the resubmitted script exited $?"
# Resumed, not restarted: epoch 1 was trained once, and the training finished.
epoch1=$(grep -c 'train epoch 1/3' "$exp2/$victim/log.txt" || true)
if [ "$epoch1" = 1 ] && grep -q 'train done' "$exp2/$victim/log.txt"; then
  pass "4. resubmitted: run $victim resumed after its last epoch (epoch 1 trained once)"
else
  fail "4. resubmitted: run $victim's log.txt has $epoch1 'epoch 1/3' lines (want 1) or no 'train done'"
fi
n1=$(find "$exp2/slurm-logs" -name "*-${job}_*.log" | wc -l)
n2=$(find "$exp2/slurm-logs" -name "*-${job2}_*.log" | wc -l)
if [ "$n1" = 4 ] && [ "$n2" = 4 ]; then
  pass "4. the two submissions' task logs are separate files (4 of job $job, 4 of job $job2)"
else
  fail "4. task logs: $n1 of job $job and $n2 of job $job2, want 4 each"
fi
same_csvs "$work/plan/res2" "4. cancelled and resubmitted"

if [ "$failed" = 0 ]; then
  echo "slurm-check: passed in $(elapsed)"
else
  echo "slurm-check: FAILED in $(elapsed)"
  exit 1
fi

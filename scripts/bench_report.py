#!/usr/bin/env python3
"""Summarize bench JSON lines (scripts/bench.sh) as a Markdown table with ratios.

Per implementation and case: the median over rounds of each round's median step time.
Ratios are measured in the same run: gfa / PyTorch per case, and each case / its plain step.
"""
import json
import os
import platform
import statistics
import subprocess
import sys
from collections import defaultdict


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


CASES = {
    "plain": ("plain", "plain"),
    "first": ("GFA first, exact", "first"),
    "deep": ("GFA deep, exact", "deep"),
    "first_fd": ("GFA first, finite difference", "first"),
    "deep_fd": ("GFA deep, finite difference", "deep"),
    "pgd10": ("PGD-10 attack batch (vs torchattacks.PGD)", "pgd10"),
}


def step_table(rows, key, batch):
    """The per-case table of `key` (a per-step median): ms, ratios to PyTorch and to plain, the rounds' spread."""
    t = defaultdict(list)
    for r in rows:
        if key in r:
            t[(r["impl"], r["case"])].append(r[key])
    med = {k: statistics.median(v) for k, v in t.items()}
    print("| case | gfa ms/step | PyTorch ms/step | gfa img/s | gfa / PyTorch | gfa case / plain | PyTorch case / plain "
          "| gfa FD / gfa exact | gfa rounds, ms | PyTorch rounds, ms |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    spread = lambda v: f"{min(v)*1e3:.0f}–{max(v)*1e3:.0f}"
    gp, pp = med.get(("gfa", "plain")), med.get(("pytorch", "plain"))
    for case, (label, ref) in CASES.items():
        g, p = med.get(("gfa", case)), med.get(("pytorch", ref))
        if g is None or p is None:
            continue
        e = med.get(("gfa", ref))
        vs_exact = f"{g/e:.2f}" if case != ref and e else "—"
        print(f"| {label} | {g*1e3:.1f} | {p*1e3:.1f} | {batch/g:.0f} | {g/p:.2f} | {g/gp:.2f} "
              f"| {p/pp:.2f} | {vs_exact} | {spread(t[('gfa', case)])} | {spread(t[('pytorch', ref)])} |")


def main(path, profile="release"):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    mem = [r for r in rows if r.get("kind") == "memory"]
    rows = [r for r in rows if r.get("kind") != "memory"]
    meta = rows[-1] if rows else {}
    rounds = len({r.get("round") for r in rows if r["impl"] == "gfa" and r["case"] == "plain"})
    rev = meta.get("git") or subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                            text=True).stdout.strip()
    print(f"# Training-step time: gfa vs PyTorch eager (`make bench`)\n")
    paths = sorted({f"{r['impl']} {r['code_path']}" for r in rows if r.get("code_path")})
    if paths:
        print(f"libtorch's CPU code path: {', '.join(paths)}.\n")
    print(f"Machine: {cpu_model()}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}; "
          f"libtorch/torch 2.11.0 on both sides; gfa built with the {profile} profile; git {rev or 'unknown'}.")
    print(f"Model `cnn` width {meta.get('width')}, batch {meta.get('batch')}, Adam, random [0,1] inputs, "
          f"{meta.get('threads')} intra-op thread(s) on both sides; median step over {meta.get('steps')} steps, "
          f"median over {rounds} alternating rounds. Raw: `results/bench/{os.path.basename(path)}`. The finite-difference "
          f"rows (`gradient = \"finite_difference\"` in the GFA options, step 1e-3) are compared with PyTorch's exact "
          f"double-backprop step of the same taps: PyTorch has no finite-difference GFA.\n")
    loads = [r["load1"] for r in rows if isinstance(r.get("load1"), (int, float))]
    if loads:
        print(f"1-minute load average when each case ended: {min(loads):.1f}–{max(loads):.1f} on "
              f"{os.cpu_count()} logical cores (above the threads in use, other processes shared the CPU).\n")
    print("## Wall time\n")
    step_table(rows, "median_s", meta.get("batch", 0))
    print("\nThe last two columns are the range of the rounds' medians: ratios inside that spread are not "
          "differences this machine can resolve.")
    if any("cpu_median_s" in r for r in rows):
        print("\n## CPU time\n")
        print("The process's CPU time over a step (all its threads), median as above: with one thread it is the "
              "step's own work, which other processes on the machine do not inflate as they do the wall time. "
              "(img/s: images per CPU-second.)\n")
        step_table(rows, "cpu_median_s", meta.get("batch", 0))
    print("\nTargets: gfa's plain step ≤ 1.0× PyTorch's, GFA exact steps ≤ 1.0×, finite-difference GFA "
          "steps ≤ 0.85×, one PGD-10 attack batch ≤ 1.0× torchattacks'. Where freed memory goes: gfa keeps "
          "freed tensor memory for reuse (`gfa_core::host_memory`), PyTorch runs with glibc's defaults; "
          "`results/bench/plain_step_profile.md` measures both ways.")
    if mem:
        m0 = mem[0]
        print(f"\n## Peak memory of one training step\n")
        print(f"`{m0['arch']}` (full width), batch {m0['batch']}, random [0,1] inputs, Adam; "
              f"{m0['steps']} steps in a fresh process per configuration "
              f"(`bench_train_step --memory {m0['arch']} CASE {m0['batch']} {m0['steps']}`); the peak is the "
              f"process's VmHWM, which includes libtorch and the model (see the RSS before the first step). "
              f"The step times of these runs are in the raw file; the speed comparison is the tables above.\n")
        print("| case | peak RSS MiB | RSS before the first step, MiB | peak − before, MiB | × plain (peak − before) |")
        print("| --- | --- | --- | --- | --- |")
        base = next((r["peak_rss_mib"] - r["rss_before_mib"] for r in mem if r["case"] == "plain"), None)
        for r in mem:
            grow = r["peak_rss_mib"] - r["rss_before_mib"]
            rel = f"{grow / base:.2f}" if base else "—"
            print(f"| {CASES.get(r['case'], (r['case'],))[0]} | {r['peak_rss_mib']:.0f} | {r['rss_before_mib']:.0f} "
                  f"| {grow:.0f} | {rel} |")


def attacks(path, checkpoint="`target/bench-model`"):
    """`results/bench/attacks.md` from scripts/bench_attacks.sh's JSON lines."""
    rows = [json.loads(l) for l in open(path) if l.strip()]
    t = defaultdict(list)
    info = {}
    for r in rows:
        t[(r["impl"], r["attack"])].append(r["seconds"])
        info[(r["impl"], r["attack"])] = r
    med = {k: statistics.median(v) for k, v in t.items()}
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    g = info.get(("gfa", "apgd-ce"), {})
    print("# Attack run time: gfa vs the Python references (`make bench`)\n")
    print(f"Machine: {cpu_model()}, {os.cpu_count()} logical cores; libtorch/torch 2.11.0 on both sides; "
          f"git {rev or 'unknown'}. Model: {checkpoint}, `cnn` width 0.25; "
          f"the first {g.get('n', '?')} CIFAR-10 test points, attacked where the model is correct "
          f"(clean accuracy {100 * g.get('clean_acc', 0):.1f}%). Median over "
          f"{len(t.get(('gfa', 'apgd-ce'), []))} round(s); gfa's time is the `seconds` of its "
          f"`gfa eval` row, the references' is wall time around the attack call. "
          f"Raw: `results/bench/{os.path.basename(path)}`.\n")
    print("| attack | reference | gfa s | reference s | gfa / reference | gfa robust | reference robust | target |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    targets = {"apgd-ce": "≤ 0.8×", "deepfool": "≥ 10× faster (≤ 0.1×)", "square": "—"}
    labels = {"apgd-ce": "APGD-CE Linf 8/255, 100 it.", "deepfool": "DeepFool L2, 50 steps",
              "square": "Square Linf 8/255, 5000 q."}
    for a in ["apgd-ce", "deepfool", "square"]:
        gs, rs = med.get(("gfa", a)), med.get(("reference", a))
        if gs is None:
            continue
        gi, ri = info[("gfa", a)], info.get(("reference", a), {})
        g_rob = f"{100 * gi['robust_acc']:.1f}% of {gi['n']}"
        if ri:
            r_rob = f"{ri['robust']} of {ri['attacked']} attacked"
            print(f"| {labels[a]} | {ri['library']} | {gs:.1f} | {rs:.1f} | {gs / rs:.2f} | {g_rob} | {r_rob} | {targets[a]} |")
        else:
            print(f"| {labels[a]} | not run | {gs:.1f} | — | — | {g_rob} | — | {targets[a]} |")
    print("\ngfa robust: robust accuracy of the `gfa eval` row over all N points (DeepFool: points "
          "whose minimal perturbation exceeds L2 0.5, or that it could not fool); reference robust: "
          "points the reference left correctly classified among those it attacked.")


def methods(path):
    """`results/bench/methods.md` from scripts/bench_methods.sh's JSON lines."""
    rows = [json.loads(l) for l in open(path) if l.strip()]
    t = defaultdict(list)
    for r in rows:
        t[r["method"]].append(r["seconds"])
    med = {k: statistics.median(v) for k, v in t.items()}
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    n = rows[0]["n_train"] if rows else 0
    print("# Epoch cost per training method (`make bench`)\n")
    print(f"Machine: {cpu_model()}, {os.cpu_count()} logical cores; git {rev or 'unknown'}. One epoch of "
          f"`gfa train --model cnn --width 0.25 --optimizer adam --batch-size 128 --n-train {n} --n-test 100` "
          f"per method on the CIFAR-10 copy, each at its defaults (docs/method.md §3) (PGD-AT and TRADES: 10 inner "
          f"steps; gfa, gnr, gfa_pgd_at: λ = 0.3, deep/first taps by default); the time is train.csv's "
          f"`seconds` (the epoch and a 100-point test pass), median over {len(t.get('standard', []))} round(s). "
          f"Raw: `results/bench/methods.jsonl`.\n")
    print("| method | s per epoch | × standard | est. s per 50k-image epoch |")
    print("| --- | --- | --- | --- |")
    base = med.get("standard")
    for m, s_ in med.items():
        print(f"| {m} | {s_:.1f} | {s_ / base:.1f} | {s_ * 50000 / n:.0f} |")
    print("\nExpected (issue: methods): PGD-AT-10 ≈ 11×, GFA ≈ 2× standard.")


if __name__ == "__main__":
    if sys.argv[1] == "attacks":
        attacks(*sys.argv[2:4])
    elif sys.argv[1] == "methods":
        methods(sys.argv[2])
    else:
        main(*sys.argv[1:3])

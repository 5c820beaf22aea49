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


def main(path, profile="release"):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    t = defaultdict(list)
    meta = {}
    for r in rows:
        t[(r["impl"], r["case"])].append(r["median_s"])
        meta = r
    med = {k: statistics.median(v) for k, v in t.items()}
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"# Training-step time: gfa vs PyTorch eager (`make bench`)\n")
    print(f"Machine: {cpu_model()}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}; "
          f"libtorch/torch 2.11.0 on both sides; gfa built with the {profile} profile; git {rev or 'unknown'}.")
    print(f"Model `cnn` width {meta.get('width')}, batch {meta.get('batch')}, Adam, random [0,1] inputs; "
          f"median step over {meta.get('steps')} steps, median over {len(t[('gfa', 'plain')])} alternating rounds. "
          f"Raw: `results/bench/train_step.jsonl`.\n")
    print("| case | gfa ms/step | PyTorch ms/step | gfa img/s | gfa / PyTorch | gfa case / plain | PyTorch case / plain |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for case in ["plain", "first", "deep"]:
        g, p = med.get(("gfa", case)), med.get(("pytorch", case))
        gp, pp = med.get(("gfa", "plain")), med.get(("pytorch", "plain"))
        if g is None or p is None:
            continue
        print(f"| {case} | {g*1e3:.1f} | {p*1e3:.1f} | {meta.get('batch', 0)/g:.0f} | {g/p:.2f} | {g/gp:.2f} | {p/pp:.2f} |")
    print("\nTargets (issue: foundation): gfa's GFA step ≤ 0.9× PyTorch's; gfa's plain step ≤ 1.0× PyTorch's.")


if __name__ == "__main__":
    main(*sys.argv[1:3])

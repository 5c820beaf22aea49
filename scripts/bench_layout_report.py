#!/usr/bin/env python3
"""Summarize scripts/bench_layout.sh's JSON lines: channels last against the default layout.

Per task and model, each round gives one ratio (channels-last time / default time, both
medians of that round, measured back to back in one process); the table gives the median of
those ratios over the rounds and their range (the spread). Channels last is adopted for a
model and task when it is faster in every round by more than that spread: the range's upper
end is below 1 and 1 − median exceeds the range's width.

Usage: bench_layout_report.py RAW.jsonl
"""
import json
import os
import statistics
import sys
from collections import defaultdict

from bench_report import cpu_model  # this folder is on the path of a script run from it


TASKS = {"train_step": "training step (plain, Adam)", "apgd_ce": "APGD-CE batch"}


def main():
    rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
    device = rows[0]["device"]
    # One thread on the CPU: CPU time is the task's own work. On CUDA the work is the GPU's,
    # so the wall time (after synchronizing) is the figure.
    key = "cpu_median_s" if device == "cpu" else "wall_median_s"
    what = "CPU time (one thread)" if device == "cpu" else "wall time (synchronized)"
    t = defaultdict(dict)
    sizes = {}
    for r in rows:
        t[(r["task"], r["arch"])].setdefault(r["round"], {})[r["layout"]] = r[key]
        sizes[r["arch"]] = (r["width"], r["batch"])
    iters = max(r["iters"] for r in rows)
    rounds = sorted({r["round"] for r in rows})
    gits = sorted({r["git"] for r in rows})
    print(f"# Channels last against the default memory layout (`make bench`)\n")
    print(
        f"Machine: {cpu_model()}, {os.cpu_count()} logical cores; device {device}; libtorch 2.11.0; "
        f"git {', '.join(gits)}. Raw: `{sys.argv[1]}` (scripts/bench_layout.sh, "
        f"{len(rounds)} rounds). Figure: the median {what} of a task within a round; ratio = "
        f"channels last / default, both measured back to back in the same process (the order "
        f"alternating with the round); spread = the range of the rounds' ratios. "
        f"Channels last is adopted where it is faster by more than the spread (range below 1 and "
        f"1 − median > the range's width).\n"
    )
    print(
        "Sizes: "
        + ", ".join(f"`{a}` width {w}, batch {b}" for a, (w, b) in sizes.items())
        + f"; random [0,1] images, seeded weights; APGD-CE L∞ 8/255 with {iters} iterations "
        "(reference settings otherwise). The residual networks run at reduced width and batch: "
        "a full-size step takes tens of seconds on one CPU thread.\n"
    )
    print("| task | model | default ms | channels last ms | ratio (median) | rounds' range | faster by more than the spread |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    decisions = {}
    for task in TASKS:
        for arch in sizes:
            per = t.get((task, arch))
            if not per:
                continue
            ratios = [v["channels_last"] / v["contiguous"] for v in per.values() if len(v) == 2]
            d = statistics.median(v["contiguous"] for v in per.values()) * 1e3
            c = statistics.median(v["channels_last"] for v in per.values()) * 1e3
            med, lo, hi = statistics.median(ratios), min(ratios), max(ratios)
            adopt = hi < 1 and (1 - med) > (hi - lo)
            decisions[(task, arch)] = adopt
            print(f"| {TASKS[task]} | `{arch}` | {d:.1f} | {c:.1f} | {med:.2f} | {lo:.2f}–{hi:.2f} | {'yes' if adopt else 'no'} |")
    print()
    both = [a for a in sizes if decisions.get(("train_step", a)) and decisions.get(("apgd_ce", a))]
    neither = [a for a in sizes if not decisions.get(("train_step", a)) and not decisions.get(("apgd_ce", a))]
    print(
        "Faster by more than the spread for both tasks: "
        + (", ".join(f"`{a}`" for a in both) if both else "none")
        + "; for neither: "
        + (", ".join(f"`{a}`" for a in neither) if neither else "none")
        + ".\n"
    )
    print(
        "**Decision.** A model's `layout` serves its training and its attacks alike, so channels "
        "last is adopted for a model only where it is faster by more than the spread in both: "
        + (
            ", ".join(f"`{a}`" for a in both) + " (set `layout = \"channels_last\"` in its `[model]`)."
            if both
            else "for none of them on this device, so the default stays `contiguous` and "
            "`layout = \"channels_last\"` remains an option (docs/models.md)."
        )
    )


if __name__ == "__main__":
    main()

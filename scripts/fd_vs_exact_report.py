#!/usr/bin/env python3
"""The finite-difference GFA gradient against the exact one on the same recipe (scripts/fd_vs_exact.sh).

Reads each run folder of RESULTS_DIR (config.toml, eval.csv, gfa_value.csv, checks.csv), pairs
the runs that differ only in the method's `gradient`, and prints a Markdown table: collapse
verdict, clean accuracy and test cosine per tap for exact and finite difference, and whether the
pair agrees (same collapse verdict, cosines within 0.05, clean accuracy within 2 points).

usage: fd_vs_exact_report.py RESULTS_DIR COMMAND MINUTES
"""
import csv
import json
import sys
import tomllib
from pathlib import Path

COS_TOL = 0.05
ACC_TOL = 0.02


def rows(path):
    if not path.exists():
        sys.exit(f"{path}: missing (did the run finish?)")
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def run(folder):
    cfg = tomllib.loads((folder / "config.toml").read_text())
    method = dict(cfg["method"])
    gradient = method.pop("gradient", "exact")
    method.pop("fd_step", None)
    clean = {float(r["clean_acc"]) for r in rows(folder / "eval.csv")}
    if len(clean) != 1:
        sys.exit(f"{folder}: eval.csv rows disagree on clean accuracy: {sorted(clean)}")
    cos = {r["tap"]: float(r["value"]) for r in rows(folder / "gfa_value.csv") if r["split"] == "test"}
    collapse = [r["result"] for r in rows(folder / "checks.csv") if r["check"] == "collapse"]
    if len(collapse) != 1:
        sys.exit(f"{folder}: checks.csv has no single collapse row")
    key = json.dumps(method, sort_keys=True)
    return key, gradient, {"clean": clean.pop(), "cos": cos, "collapse": collapse[0], "id": folder.name}


def main():
    results, command, minutes = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    pairs = {}
    for folder in sorted(p for p in results.iterdir() if (p / "config.toml").exists()):
        key, gradient, r = run(folder)
        pairs.setdefault(key, {})[gradient] = r
    print("# Finite-difference against exact GFA gradient: training behaviour\n")
    print(
        f"Command: `{command.strip()}` ({minutes} min on this machine; runs in "
        f"`{results}/`). quick.toml's recipe (`cnn` width 0.25, 5 epochs, Adam 1e-3, CIFAR-10, "
        "500 test points; the command's `--set` overrides, if any, change it), the attack suite "
        "cut to FGSM 8/255; each GFA run trained with the "
        "exact double-backprop gradient and with `gradient = \"finite_difference\"` (default "
        "`fd_step`). Agreement: the same collapse verdict (check 9), test cosine within "
        f"{COS_TOL} at every tap, clean accuracy within {100 * ACC_TOL:.0f} points.\n"
    )
    print("| method | gradient | run | collapse | clean acc | test cosine per tap |")
    print("| --- | --- | --- | --- | --- | --- |")
    verdicts = []
    for key, by in sorted(pairs.items()):
        m = json.loads(key)
        label = f"{m['kind']} λ = {m.get('lambda')}, layers = {m.get('layers', 'default')}"
        for gradient in ("exact", "finite_difference"):
            r = by.get(gradient)
            if r is None:
                continue
            cos = "; ".join(f"{t} {v:.3f}" for t, v in r["cos"].items())
            print(f"| {label} | {gradient} | {r['id']} | {r['collapse']} | {100 * r['clean']:.1f} % | {cos} |")
        if {"exact", "finite_difference"} <= by.keys():
            e, f = by["exact"], by["finite_difference"]
            dcos = max((abs(e["cos"][t] - f["cos"].get(t, float("nan"))) for t in e["cos"]), default=0.0)
            dacc = abs(e["clean"] - f["clean"])
            ok = e["collapse"] == f["collapse"] and dcos <= COS_TOL and dacc <= ACC_TOL
            verdicts.append(
                f"- {label}: {'agree' if ok else 'DIFFER'} (collapse {e['collapse']} / "
                f"{f['collapse']}, largest cosine difference {dcos:.3f}, clean accuracy "
                f"difference {100 * dacc:.1f} points)"
            )
        else:
            verdicts.append(f"- {label}: no pair (runs: {', '.join(sorted(by))})")
    print()
    print("\n".join(verdicts))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""results/bench/gpu.md from the JSON lines of scripts/gpu-check.sh.

    python scripts/gpu_check_report.py gpu.jsonl > gpu.md

Input rows: {"kind": "doctor", ...} (gfa doctor --json), {"kind": "comparison", "row": ...}
(gfa cuda-check), {"kind": "timing", "impl": "gfa" | "pytorch", "row": ...}, {"kind": "run",
...} (the script's own facts: command, commit, date).
"""
import json
import sys


def main(path):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    doctor = next((r for r in rows if r["kind"] == "doctor"), {})
    run = next((r for r in rows if r["kind"] == "run"), {})
    dry = any(r.get("dry_run") for r in rows)
    out = ["# gfa on a GPU: CUDA against the CPU, and against PyTorch", ""]
    if dry:
        out += ["**Dry run on the CPU** (`gfa cuda-check --dry-run`): every step ran on the CPU "
                "against itself. Nothing here is about CUDA.", ""]
    out += [f"**Command:** `{run.get('command', 'bash scripts/gpu-check.sh')}`, git "
            f"`{run.get('git', '?')}`, {run.get('date', '?')}.",
            f"**Machine:** {', '.join(g['name'] for g in doctor.get('gpus', [])) or 'no GPU'}; "
            f"CPU {doctor.get('cpu_model', '?')}, {doctor.get('cpu_cores', '?')} cores "
            f"(libtorch code path {doctor.get('cpu_capability', '?')}); libtorch "
            f"{doctor.get('libtorch_version', '?')} at `{doctor.get('libtorch_path', '?')}`; "
            f"NVIDIA driver CUDA {doctor.get('driver_cuda_version') or '-'}.",
            "**Data:** gfa's synthetic CIFAR-shaped set (seed 0); `cnn` width 0.25.", ""]
    num = next((r for r in rows if r["kind"] == "numerics"), None)
    if num:
        t = num["timings"]
        out += [f"**Numerics** (docs/numerics.md): comparisons at {num['comparisons']}; timings at "
                f"precision {t['precision']}, deterministic {'on' if t['deterministic'] else 'off'} "
                f"(PyTorch's at the same precision). The training-step timings use a batch already "
                f"on the device, as gfa's trainer does (the training set lives there).", ""]
    comps = [r["row"] for r in rows if r["kind"] == "comparison"]
    if comps:
        out += ["## gfa on CUDA against gfa on the CPU (same weights and points)", "",
                "| check | value | bound | result | detail |", "| --- | --- | --- | --- | --- |"]
        for c in comps:
            out.append(f"| {c['check']} | {c['value']:.3g} | {c['bound']:g} | "
                       f"{'pass' if c['pass'] else '**FAIL**'} | {c['detail']} |")
        out.append("")
    timings = [r for r in rows if r["kind"] == "timing"]
    if timings:
        by = {}
        for r in timings:
            by.setdefault(r["row"]["what"], {})[r["impl"]] = r["row"]
        out += ["## Speed on the same device (gfa / PyTorch: below 1 is faster)", "",
                "| what | device | gfa s | PyTorch s | gfa / PyTorch | gfa detail | PyTorch detail |",
                "| --- | --- | --- | --- | --- | --- | --- |"]
        for what, d in by.items():
            g, p = d.get("gfa"), d.get("pytorch")
            cell = lambda r: f"{r['median_s']:.4g}" if r else "-"
            ratio = f"{g['median_s'] / p['median_s']:.2f}" if g and p else "-"
            out.append(f"| {what} | {(g or p)['device']} | {cell(g)} | {cell(p)} | {ratio} | "
                       f"{g['detail'] if g else '-'} | {p['detail'] if p else '-'} |")
        out += ["", "Training step: median seconds per step. APGD-CE: seconds for all points; gfa "
                "stops attacking a point once it is fooled, the references run every point for "
                "all iterations, so that ratio depends on how robust the model is.", ""]
    skipped = [r for r in rows if r["kind"] == "skipped"]
    if skipped:
        out += ["## Skipped", ""] + [f"- {r['what']}: {r['why']}" for r in skipped] + [""]
    print("\n".join(out))


if __name__ == "__main__":
    main(*sys.argv[1:])

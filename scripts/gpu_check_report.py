#!/usr/bin/env python3
"""results/bench/gpu.md from the JSON lines of scripts/gpu-check.sh.

    python scripts/gpu_check_report.py gpu.jsonl > gpu.md

Input rows: {"kind": "doctor", ...} (gfa doctor --json), {"kind": "comparison", "row": ...}
and {"kind": "numerics", ...} (gfa cuda-check), {"kind": "timing", "impl": "gfa" | "pytorch",
"row": ...}, {"kind": "run", ...} (the script's own facts: command, commit, date, the
precision and determinism asked for), {"kind": "cuda_check", "exit": ..., "verdict": ...} (what
gfa cuda-check's exit status means: a disagreement, a crash, an error or a timeout).
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
        tf32 = (" and the forward logits also at tf32, within twice the change of TF32 emulated "
                "on the CPU plus the fp32 allowance" if num.get("tf32_comparison") else "")
        out += [f"**Numerics** (docs/numerics.md): comparisons at {num['comparisons']}{tf32}; "
                f"timings at precision {t['precision']}, deterministic "
                f"{'on' if t['deterministic'] else 'off'} (PyTorch's at the same precision). The "
                f"training-step timings use a batch already on the device, as gfa's trainer does "
                f"(the training set lives there).", ""]
    else:
        det = "on" if run.get("deterministic") else "off"
        out += [f"**Numerics** asked for: --precision {run.get('precision', '?')}, deterministic "
                f"{det} (gfa cuda-check stopped before it reported them).", ""]
    verdict = next((r for r in rows if r["kind"] == "cuda_check"), None)
    if verdict:
        out += [f"**gfa cuda-check:** exit {verdict['exit']}: {verdict['verdict']}.", ""]
    comps = [r["row"] for r in rows if r["kind"] == "comparison"]
    if comps:
        out += ["## gfa on CUDA against gfa on the CPU (same weights and points)", "",
                "| check | precision | value | bound | result | detail |",
                "| --- | --- | --- | --- | --- | --- |"]
        for c in comps:
            out.append(f"| {c['check']} | {c.get('precision', 'fp32')} | {c['value']:.3g} | "
                       f"{c['bound']:g} | "
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

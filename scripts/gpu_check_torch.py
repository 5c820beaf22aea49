#!/usr/bin/env python3
"""The PyTorch side of scripts/gpu-check.sh: the same timings as `gfa cuda-check`, with PyTorch,
on the same device, weights and points.

    python scripts/gpu_check_torch.py --export DIR [--device cuda] [--width 0.25] [--batch 128]
        [--steps 20] [--autoattack /path/to/auto-attack]

- training step (plain, GFA-first, GFA-deep): scripts/bench_pytorch.py's twin of gfa's `cnn` and
  its step, on a random batch, Adam; median of --steps steps after 3 untimed ones;
- APGD-CE (Linf 8/255, 100 iterations, 1 restart) on DIR/points.safetensors against the model
  in DIR/model.safetensors (spec DIR/model.json; both written by `gfa cuda-check --export`):
  auto-attack's APGDAttack when --autoattack (or AUTOATTACK_DIR) names a checkout of
  fra31/auto-attack (not on PyPI), else torchattacks' APGD when torchattacks is installed,
  else skipped with the reason on stderr.
TF32 as --precision says: the precision gfa's timings ran at (`gfa cuda-check` prints it). Prints one JSON line per
timing: {"kind": "timing", "impl": "pytorch", "row": {what, device, median_s, per_s, detail}}.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_pytorch  # noqa: E402
import pytorch_models  # noqa: E402


def load_safetensors(path):
    """safetensors.torch.load_file, or a reader of the format's few lines where the package is
    missing (a GPU machine may have torch alone)."""
    try:
        from safetensors.torch import load_file
        return load_file(path)
    except ImportError:
        pass
    dtypes = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64, "U8": torch.uint8}
    data = open(path, "rb").read()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        lo, hi = t["data_offsets"]
        buf = bytearray(data[8 + n + lo:8 + n + hi])
        out[name] = torch.frombuffer(buf, dtype=dtypes[t["dtype"]]).reshape(t["shape"]).clone()
    return out


def skipped(what, why):
    print(json.dumps({"kind": "skipped", "what": what, "why": why}), flush=True)
    print(f"skipped: {what} ({why})", file=sys.stderr)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def emit(what, device, median_s, per_s, detail):
    row = {"what": what, "device": str(device), "median_s": median_s, "per_s": per_s,
           "detail": detail}
    print(json.dumps({"kind": "timing", "impl": "pytorch", "row": row}), flush=True)


def train_steps(args, device):
    torch.manual_seed(0)
    x = torch.rand(args.batch, 3, 32, 32).to(device)
    y = torch.randint(0, 10, (args.batch,)).to(device)
    for mode in ["plain", "first", "deep"]:
        torch.manual_seed(0)
        model = bench_pytorch.Cnn(args.width).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        times = []
        for i in range(3 + args.steps):
            sync(device)
            t0 = time.perf_counter()
            bench_pytorch.step(model, opt, x, y, mode, 0.3)
            sync(device)
            if i >= 3:
                times.append(time.perf_counter() - t0)
        m = statistics.median(times)
        emit(f"train step {mode}", device, m, args.batch / m,
             f"cnn width {args.width}, batch {args.batch}, median of {args.steps} steps, torch {torch.__version__}")


def apgd(args, device):
    spec = json.load(open(os.path.join(args.export, "model.json")))
    model = pytorch_models.build(spec)
    model.load_state_dict(load_safetensors(os.path.join(args.export, "model.safetensors")))
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    pts = load_safetensors(os.path.join(args.export, "points.safetensors"))
    x, y = pts["x"].to(device), pts["y"].to(device)
    eps = 8 / 255
    if args.autoattack:
        sys.path.insert(0, args.autoattack)
        from autoattack.autopgd_base import APGDAttack

        attack = APGDAttack(model, norm="Linf", eps=eps, n_iter=100, n_restarts=1, loss="ce",
                            seed=0, device=device)
        run, library = (lambda: attack.perturb(x, y)), "auto-attack APGDAttack"
    else:
        try:
            import torchattacks
        except ImportError:
            skipped("PyTorch APGD-CE reference", "neither AUTOATTACK_DIR (a checkout of "
                    "fra31/auto-attack) nor torchattacks is available")
            return
        attack = torchattacks.APGD(model, norm="Linf", eps=eps, steps=100, n_restarts=1,
                                   loss="ce", seed=0)
        run, library = (lambda: attack(x, y)), f"torchattacks {torchattacks.__version__} APGD"
    sync(device)
    t0 = time.perf_counter()
    adv = run()
    sync(device)
    s = time.perf_counter() - t0
    with torch.no_grad():
        robust = int((model(adv).argmax(1) == y).sum())
    emit("APGD-CE", device, s, len(y) / s,
         f"{library}, Linf 8/255, 100 iterations, {len(y)} points, {robust} robust")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--export", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--autoattack", default=os.environ.get("AUTOATTACK_DIR"))
    ap.add_argument("--precision", choices=["fp32", "tf32"], default="tf32",
                    help="what gfa's timings ran at (gfa cuda-check prints it): tf32 allows "
                         "TensorFloat-32 in cuDNN and cuBLAS, fp32 forbids it")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit(f"PyTorch {torch.__version__} sees no CUDA device")
    tf32 = args.precision == "tf32"
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    train_steps(args, device)
    apgd(args, device)


if __name__ == "__main__":
    main()

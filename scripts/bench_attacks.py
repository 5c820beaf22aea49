#!/usr/bin/env python3
"""The Python references of `make bench`'s attack timings, on the weights and points gfa uses.

    python scripts/bench_attacks.py --checkpoint DIR --data CIFAR_DIR --n 500 \
        [--autoattack /path/to/auto-attack]

Loads `DIR/final.safetensors` into the name-for-name twin of scripts/pytorch_models.py (spec from
`DIR/checkpoint.json`), the first N points of CIFAR-10's test_batch.bin, and times on the points
the model classifies correctly (as gfa's evaluation does):
- APGD-CE, Linf 8/255, 100 iterations, 1 restart: auto-attack's `APGDAttack` (needs a checkout of
  fra31/auto-attack, which is not on PyPI, passed with --autoattack; skipped without one);
- DeepFool, L2, 50 steps, overshoot 0.02: torchattacks 3.5.1 `DeepFool` (its per-image loop);
- Square, Linf 8/255, 5000 queries, p_init 0.8: auto-attack's `SquareAttack`.
Prints one JSON line per attack: seconds, points attacked, points still robust, median norm.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pytorch_models  # noqa: E402


def load_test(data_dir, n):
    raw = np.fromfile(os.path.join(data_dir, "test_batch.bin"), dtype=np.uint8).reshape(-1, 3073)[:n]
    y = torch.from_numpy(raw[:, 0].astype(np.int64))
    x = torch.from_numpy(raw[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)
    return x, y


def emit(**kw):
    print(json.dumps({"impl": "reference", **kw}), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--autoattack", default=os.environ.get("AUTOATTACK_DIR"))
    ap.add_argument("--only", default="apgd-ce,deepfool,square")
    args = ap.parse_args()
    only = set(args.only.split(","))

    spec = json.load(open(os.path.join(args.checkpoint, "checkpoint.json")))["model"]
    model = pytorch_models.build(spec)
    from safetensors.torch import load_file

    model.load_state_dict(load_file(os.path.join(args.checkpoint, "final.safetensors")))
    model.eval()
    net = model  # forward(x) returns the logits
    x, y = load_test(args.data, args.n)
    with torch.no_grad():
        correct = net(x).argmax(1) == y
    xc, yc = x[correct], y[correct]
    eps = 8 / 255

    if args.autoattack:
        sys.path.insert(0, args.autoattack)
        from autoattack.autopgd_base import APGDAttack
        from autoattack.square import SquareAttack

        if "apgd-ce" in only:
            a = APGDAttack(net, norm="Linf", eps=eps, n_iter=100, n_restarts=1, loss="ce", seed=0, device="cpu")
            t = time.perf_counter()
            xa = a.perturb(xc, yc)
            s = time.perf_counter() - t
            with torch.no_grad():
                robust = int((net(xa).argmax(1) == yc).sum())
            emit(attack="apgd-ce", library="auto-attack", seconds=s, attacked=len(yc), robust=robust)
        if "square" in only:
            a = SquareAttack(net, p_init=0.8, n_queries=5000, eps=eps, norm="Linf", n_restarts=1,
                             seed=0, verbose=False, device="cpu", resc_schedule=False)
            t = time.perf_counter()
            xa = a.perturb(xc, yc)
            s = time.perf_counter() - t
            with torch.no_grad():
                robust = int((net(xa).argmax(1) == yc).sum())
            emit(attack="square", library="auto-attack", seconds=s, attacked=len(yc), robust=robust)
    else:
        print("no --autoattack checkout: APGD-CE and Square references skipped", file=sys.stderr)

    if "deepfool" in only:
        import torchattacks

        a = torchattacks.DeepFool(net, steps=50, overshoot=0.02)
        t = time.perf_counter()
        xa = a(xc, yc)
        s = time.perf_counter() - t
        with torch.no_grad():
            fooled = net(xa).argmax(1) != yc
        norms = (xa - xc).flatten(1).norm(dim=1)[fooled]
        emit(attack="deepfool", library="torchattacks", seconds=s, attacked=len(yc),
             robust=int((~fooled).sum()), median_l2=float(norms.median()) if len(norms) else None)


if __name__ == "__main__":
    main()

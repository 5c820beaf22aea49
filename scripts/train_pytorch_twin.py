#!/usr/bin/env python3
"""The foundation recipe in PyTorch, on the twin of gfa's model, for comparison with `gfa train`.

    python scripts/train_pytorch_twin.py --data CIFAR_DIR [--epochs 10] [--width 0.25]
        [--init torch|kaiming] [--seed 0]

`cnn` of scripts/pytorch_models.py (mean = std = 0.5 normalization), standard training, Adam
lr 1e-3, batch 128, random crop (4-pixel zero padding) + horizontal flip, constant learning rate,
on CIFAR-10's binary files. `--pgd-steps K` trains with Madry PGD-AT instead (K steps of `--pgd-step` in the
`--pgd-eps` Linf ball, uniform start). `--init kaiming` redraws conv/linear weights as tch does by default
(Kaiming-uniform, ReLU gain, fan-in) and zeroes conv biases; `torch` keeps PyTorch's defaults.
Prints one JSON line per epoch (train loss and accuracy, test accuracy on all 10,000 points).
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pytorch_models  # noqa: E402


def load(data_dir, names):
    raw = np.concatenate([np.fromfile(os.path.join(data_dir, n), dtype=np.uint8).reshape(-1, 3073) for n in names])
    y = torch.from_numpy(raw[:, 0].astype(np.int64))
    x = torch.from_numpy(raw[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)
    return x, y


def augment(x, g):
    n = x.shape[0]
    padded = F.pad(x, (4, 4, 4, 4))
    i = torch.randint(0, 9, (n,), generator=g)
    j = torch.randint(0, 9, (n,), generator=g)
    rows = (i[:, None] + torch.arange(32)[None, :])  # [n, 32]
    cols = (j[:, None] + torch.arange(32)[None, :])
    out = padded[torch.arange(n)[:, None, None, None], torch.arange(3)[None, :, None, None],
                 rows[:, None, :, None], cols[:, None, None, :]]
    flip = torch.rand(n, generator=g) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


def pgd(model, x, y, eps, step, steps, g):
    """Madry PGD (uniform start, signed steps, last iterate) with the model in eval mode."""
    model.eval()
    xa = (x + (torch.rand(x.shape, generator=g) * 2 - 1) * eps).clamp(0, 1)
    for _ in range(steps):
        xa.requires_grad_(True)
        loss = F.cross_entropy(model(xa), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, xa)
        xa = torch.min(torch.max(xa.detach() + step * grad.sign(), x - eps), x + eps).clamp(0, 1)
    model.train()
    return xa.detach()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--init", choices=["torch", "kaiming"], default="torch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-train", type=int, default=50000)
    ap.add_argument("--pgd-steps", type=int, default=0, help="PGD-AT inner steps (0: standard training)")
    ap.add_argument("--pgd-eps", type=float, default=8 / 255)
    ap.add_argument("--pgd-step", type=float, default=2 / 255)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    model = pytorch_models.build({"arch": "cnn", "width": args.width})
    if args.init == "kaiming":
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                bound = math.sqrt(2.0) * math.sqrt(3.0 / fan_in)
                nn.init.uniform_(m.weight, -bound, bound)
                if isinstance(m, nn.Conv2d):
                    nn.init.zeros_(m.bias)
    xtr, ytr = load(args.data, [f"data_batch_{k}.bin" for k in range(1, 6)])
    xtr, ytr = xtr[:args.n_train], ytr[:args.n_train]
    xte, yte = load(args.data, ["test_batch.bin"])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(args.seed)
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(len(xtr), generator=g)
        tot, correct, seen = 0.0, 0, 0
        for k in range(0, len(perm), 128):
            idx = perm[k:k + 128]
            xb, yb = augment(xtr[idx], g), ytr[idx]
            if args.pgd_steps:
                xb = pgd(model, xb, yb, args.pgd_eps, args.pgd_step, args.pgd_steps, g)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += float(loss) * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
            seen += len(idx)
        model.eval()
        with torch.no_grad():
            acc = sum(int((model(xte[k:k + 500]).argmax(1) == yte[k:k + 500]).sum()) for k in range(0, len(xte), 500))
        print(json.dumps({"epoch": epoch, "init": args.init, "train_loss": tot / seen, "train_acc": correct / seen,
                          "test_acc": acc / len(xte), "seconds": time.perf_counter() - t0}), flush=True)


if __name__ == "__main__":
    main()

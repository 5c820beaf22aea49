#!/usr/bin/env python3
"""PyTorch eager reference timings for `make bench` (scripts/bench.sh).

Times one training step of the PyTorch twin of gfa's `cnn` (width given, default 0.25) with the
same batch, optimizer and loss as gfa's benchmark: plain cross-entropy, GFA on the first tap
(`input`) and GFA on all taps (`deep`), each as one autograd.grad(create_graph=True) over the taps
plus one backward of the total. Prints one JSON object per case on stdout: the median wall time
and the median process CPU time of a step.

Only for benchmarks: gfa itself and its tests never need Python.
"""
import argparse
import json
import os
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Cnn(nn.Module):
    """Name-for-name twin of crates/gfa-core/src/models/cnn.rs."""

    def __init__(self, width=1.0, num_classes=10):
        super().__init__()
        s = lambda c: max(1, int(round(c * width)))
        c1, c2, f = s(64), s(128), s(256)
        self.register_buffer("normalize_mean", torch.full((3,), 0.5))
        self.register_buffer("normalize_std", torch.full((3,), 0.5))
        self.conv1 = nn.Conv2d(3, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c1, 3, padding=1)
        self.conv3 = nn.Conv2d(c1, c2, 3, padding=1)
        self.conv4 = nn.Conv2d(c2, c2, 3, padding=1)
        self.fc1 = nn.Linear(c2 * 8 * 8, f)
        self.fc2 = nn.Linear(f, f)
        self.fc3 = nn.Linear(f, num_classes)

    def forward(self, x, taps=None):
        h = (x - self.normalize_mean.view(1, 3, 1, 1)) / self.normalize_std.view(1, 3, 1, 1)
        if taps is not None:
            h = h.detach().requires_grad_(True)
            taps.append(h)
        for i, conv in enumerate([self.conv1, self.conv2, self.conv3, self.conv4]):
            h = F.relu(conv(h))
            if taps is not None:
                taps.append(h)
            if i % 2 == 1:
                h = F.max_pool2d(h, 2)
        h = h.flatten(1)
        for fc in [self.fc1, self.fc2]:
            h = F.relu(fc(h))
            if taps is not None:
                taps.append(h)
        return self.fc3(h)


def step(model, opt, x, y, mode, lam):
    if mode == "plain":
        loss = F.cross_entropy(model(x), y)
    else:
        taps = []
        logits = model(x, taps)
        ce_sum = F.cross_entropy(logits, y, reduction="sum")
        use = taps[:1] if mode == "first" else taps
        grads = torch.autograd.grad(ce_sum, use, create_graph=True)
        reg = 0.0
        for h, g in zip(use, grads):
            c = F.cosine_similarity(h.flatten(1), g.flatten(1), dim=1, eps=1e-8)
            reg = reg + (1.0 - c).mean() / len(use)
        loss = ce_sum / x.shape[0] + lam * reg
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--lam", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--attack-reps", type=int, default=10)
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    x = torch.rand(args.batch, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch,))
    cap = torch.backends.cpu.get_cpu_capability()
    for mode in ["plain", "first", "deep"]:
        torch.manual_seed(args.seed)
        model = Cnn(args.width)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(args.warmup):
            step(model, opt, x, y, mode, args.lam)
        times, cpu = [], []
        for _ in range(args.steps):
            t0, c0 = time.perf_counter(), time.process_time()
            step(model, opt, x, y, mode, args.lam)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        print(json.dumps({
            "impl": "pytorch", "case": mode, "width": args.width, "batch": args.batch,
            "threads": torch.get_num_threads(), "median_s": statistics.median(times),
            "cpu_median_s": statistics.median(cpu),
            "images_per_s": args.batch / statistics.median(times), "steps": args.steps,
            "torch": torch.__version__, "load1": os.getloadavg()[0], "code_path": cap,
        }), flush=True)
    pgd10(args, cap)


def pgd10(args, cap):
    """One PGD-10 attack batch with torchattacks' PGD (its defaults but 8/255, 2/255, 10
    steps, random start) on the twin in eval mode, the model's own predictions as labels:
    the counterpart of gfa's `bench_pgd_step` example. Skipped without torchattacks."""
    try:
        import torchattacks
    except ImportError:
        return
    torch.manual_seed(args.seed)
    x = torch.rand(args.batch, 3, 32, 32)
    torch.manual_seed(args.seed)
    model = Cnn(args.width).eval()
    with torch.no_grad():
        y = model(x).argmax(1)
    atk = torchattacks.PGD(model, eps=8 / 255, alpha=2 / 255, steps=10, random_start=True)
    times, cpu = [], []
    for i in range(2 + args.attack_reps):
        t0, c0 = time.perf_counter(), time.process_time()
        atk(x, y)
        if i >= 2:
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    print(json.dumps({
        "impl": "pytorch", "case": "pgd10", "width": args.width, "batch": args.batch,
        "threads": torch.get_num_threads(), "median_s": statistics.median(times),
        "cpu_median_s": statistics.median(cpu), "steps": args.attack_reps,
        "torch": torch.__version__, "load1": os.getloadavg()[0], "code_path": cap,
        "torchattacks": torchattacks.__version__,
    }), flush=True)


if __name__ == "__main__":
    main()

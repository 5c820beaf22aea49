#!/usr/bin/env python3
"""PyTorch's side of scripts/profile_step.sh: the plain training step of scripts/bench_pytorch.py
(the twin of gfa's `cnn`, width 0.25, batch 128, Adam, one thread); after 3 untimed steps it
writes `enable` to the perf control FIFO named by PERF_CTL (when set), makes the steps, writes
`disable`, and prints the CPU time per step.

    python scripts/profile_step.py [steps]
"""
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_pytorch import Cnn, step  # noqa: E402


def perf_control(cmd):
    path = os.environ.get("PERF_CTL")
    if path:
        with open(path, "w") as f:
            f.write(cmd + "\n")


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x, y = torch.rand(128, 3, 32, 32), torch.randint(0, 10, (128,))
    torch.manual_seed(0)
    model = Cnn(0.25)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(3):
        step(model, opt, x, y, "plain", 0.3)
    perf_control("enable")
    c0 = time.process_time()
    for _ in range(n):
        step(model, opt, x, y, "plain", 0.3)
    c1 = time.process_time()
    perf_control("disable")
    tun = os.environ.get("GLIBC_TUNABLES", "glibc's defaults")
    print(f"pytorch plain: {(c1 - c0) * 1e3 / n:.2f} ms CPU/step over {n} steps, malloc: {tun}")


if __name__ == "__main__":
    main()

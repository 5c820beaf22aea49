#!/usr/bin/env python3
"""Share of a `perf record` profile's samples per category of the training step (by symbol),
for scripts/profile_step.sh. oneDNN's JIT-compiled convolution kernels have no symbols; their
samples (and other unnamed addresses) count as convolutions."""
import re
import subprocess
import sys
from collections import defaultdict

CATS = [
    ("convolutions (oneDNN, forward and backward)", r"\[JIT\]|jit_|dnnl|mkldnn|onednn|convolution|im2col|col2im|0x0000"),
    ("max pooling (forward and backward)", r"max_pool"),
    ("ReLU (forward and backward)", r"threshold|clamp_min|relu"),
    ("matrix products (MKL)", r"sgemm|mkl_|addmm|gemm"),
    ("page faults and memory mapping (kernel)", r"^\[k\]"),
    ("allocator (malloc/free)", r"malloc|_int_free|free|consolidate|posix_memalign|c10::alloc"),
    ("Python interpreter", r"_Py|Py[A-Z]|gc_collect|visit_|dict_|unicode|lookdict"),
]
OTHER = "other (dispatch, autograd, elementwise, optimizer)"


def shares(path):
    out = subprocess.run(["perf", "report", "-i", path, "--no-children", "--sort", "sym", "--stdio", "-q"],
                         capture_output=True, text=True, check=True).stdout
    acc = defaultdict(float)
    for line in out.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(.*)$", line)
        if not m:
            continue
        pct, sym = float(m.group(1)), m.group(2).strip()
        acc[next((name for name, rx in CATS if re.search(rx, sym)), OTHER)] += pct
    return acc


if __name__ == "__main__":
    for p in sys.argv[1:]:
        for name, pct in sorted(shares(p).items(), key=lambda kv: -kv[1]):
            print(f"  {pct:5.1f} %  {name}")

"""Fixtures for outside models: legacy torch.save files and TorchScript modules,
crates/gfa-core/tests/fixtures/{legacy,ts}_*.

Run with a Python that has torch 2.11 and safetensors (CI does not run this), after
scripts/gen_import_fixtures.py (it re-saves that script's ResNet-18 checkpoint):
    python scripts/gen_torchscript_fixtures.py
TorchScript archives keep the path of the Python source they were compiled from (for their
tracebacks); the committed ones were written from a copy of scripts/ at /tmp/gfa/scripts with
`--out crates/gfa-core/tests/fixtures`.

Legacy (pre-1.6) torch.save files, written with `_use_new_zipfile_serialization=False`:
  legacy_resnet18.pt       import_resnet18.pt's state dict (OrderedDict, float32 weights, int64
                           `num_batches_tracked`, storages shared by nothing);
  legacy_bad_truncated.pt  the state dict of `Tiny` (below), cut short inside its storages;
  legacy_bad_float64.pt    a Linear(4, 2) state dict in float64.

TorchScript modules (torch.jit.save), each taking [0, 1] pixels [N, 3, 32, 32]:
  ts_tiny_scripted.pt      torch.jit.script of `Tiny`, a small CNN with its own normalization
                           (buffers mean/std, not gfa's names), float32;
  ts_tiny_scripted_f64.pt  the same module in float64;
  ts_cnn_traced.pt         torch.jit.trace of gfa's `cnn` twin (width 0.0625, its normalization
                           layer mean = std = 0.5), weights also in ts_cnn_state.safetensors under
                           gfa's names;
  ts_resnet18_traced.pt    torch.jit.trace of the ResNet-18 twin with import_resnet18.pt's weights
                           (no normalization), the model `gfa import` reads from that file;
and modules gfa must refuse, each with its own error:
  ts_bad_tuple.pt          traced, returns (logits, features);
  ts_bad_probs.pt          scripted, returns softmax probabilities;
  ts_bad_detached.pt       scripted, returns logits detached from the input (no gradient);
  ts_bad_cuda.pt           scripted, adds a tensor it creates on "cuda" (a module exported for
                           another device).

ts_io.safetensors: `x`, a fixed [2, 3, 32, 32] float64 batch in [0, 1]; `y`, labels (int64);
`tiny.logits` and `tiny.grad` (the input gradient of the summed cross-entropy), both computed
in float64 by ts_tiny_scripted_f64.pt; `resnet18.logits` and `cnn.logits`, float32 logits of
the traced modules on x (as float32). The Rust tests (crates/gfa-core/tests/it/pt.rs and
torchscript.rs, crates/gfa-attacks/tests/it/torchscript.rs) read these.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import pytorch_models as pm  # noqa: E402
from gen_model_fixtures import randomize_batch_norm  # noqa: E402

OUT = os.path.join(HERE, "..", "crates", "gfa-core", "tests", "fixtures")


def out(name):
    return os.path.join(OUT, name)


class Tiny(torch.nn.Module):
    """A model gfa does not know: its own normalization, conv, pooling, linear head."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mu", torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1))
        self.register_buffer("sigma", torch.tensor([0.25, 0.2, 0.3]).view(1, 3, 1, 1))
        self.conv = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.head = torch.nn.Linear(4 * 4 * 4, 10)

    def forward(self, x):
        h = F.relu(self.conv((x - self.mu) / self.sigma))
        h = F.avg_pool2d(h, 4)
        return self.head(h.flatten(1))


class TupleOut(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(3, 10)

    def forward(self, x):
        f = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.head(f), f


class Probs(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(3, 10)

    def forward(self, x):
        return F.softmax(self.head(F.adaptive_avg_pool2d(x, 1).flatten(1)), dim=1)


class Detached(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(3, 10)

    def forward(self, x):
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1)).detach()


class OnCuda(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(3, 10)

    def forward(self, x):
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1)) + torch.zeros(10, device=torch.device("cuda"))


class Plain(torch.nn.Module):
    """A gfa twin called with the image only, as torch.jit.trace needs."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)


def main():
    global OUT
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=OUT, help="the fixtures folder")
    OUT = parser.parse_args().out
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(3)

    # Legacy files.
    sd = torch.load(out("import_resnet18.pt"), map_location="cpu")
    torch.save(sd, out("legacy_resnet18.pt"), _use_new_zipfile_serialization=False)
    tmp = out("legacy_tiny.tmp")
    torch.save(Tiny().state_dict(), tmp, _use_new_zipfile_serialization=False)
    with open(tmp, "rb") as f:
        whole = f.read()
    os.remove(tmp)
    with open(out("legacy_bad_truncated.pt"), "wb") as f:
        f.write(whole[: len(whole) - 1000])
    lin = torch.nn.Linear(4, 2).double()
    torch.save(lin.state_dict(), out("legacy_bad_float64.pt"), _use_new_zipfile_serialization=False)

    x = torch.rand(2, 3, 32, 32, generator=gen, dtype=torch.float64)
    y = torch.tensor([3, 7])
    io = {"x": x, "y": y}

    # A scripted model of its own, in float32 and float64.
    tiny = Tiny().eval()
    torch.jit.save(torch.jit.script(tiny), out("ts_tiny_scripted.pt"))
    tiny64 = torch.jit.script(Tiny().eval())
    tiny64.load_state_dict(tiny.state_dict())
    tiny64 = tiny64.double()
    torch.jit.save(tiny64, out("ts_tiny_scripted_f64.pt"))
    xg = x.clone().requires_grad_(True)
    logits = tiny64(xg)
    F.cross_entropy(logits, y, reduction="sum").backward()
    io["tiny.logits"] = logits.detach()
    io["tiny.grad"] = xg.grad

    x32 = x.float()
    # gfa's cnn twin with its normalization layer, traced.
    cnn = pm.build(dict(arch="cnn", width=0.0625)).eval()
    save_file({k: v.contiguous() for k, v in cnn.state_dict().items()}, out("ts_cnn_state.safetensors"))
    traced = torch.jit.trace(Plain(cnn).eval(), x32)
    torch.jit.save(traced, out("ts_cnn_traced.pt"))
    with torch.no_grad():
        io["cnn.logits"] = traced(x32)

    # The ResNet-18 of import_resnet18.pt, traced.
    r18 = pm.build(dict(arch="resnet18", width=0.0625, normalize=False))
    randomize_batch_norm(r18, gen)  # overwritten below: only the module structure is used
    r18.load_state_dict(sd)
    r18.eval()
    traced = torch.jit.trace(Plain(r18).eval(), x32)
    torch.jit.save(traced, out("ts_resnet18_traced.pt"))
    with torch.no_grad():
        io["resnet18.logits"] = traced(x32)

    # Modules gfa refuses.
    torch.jit.save(torch.jit.trace(TupleOut().eval(), x32), out("ts_bad_tuple.pt"))
    torch.jit.save(torch.jit.script(Probs().eval()), out("ts_bad_probs.pt"))
    torch.jit.save(torch.jit.script(Detached().eval()), out("ts_bad_detached.pt"))
    torch.jit.save(torch.jit.script(OnCuda().eval()), out("ts_bad_cuda.pt"))

    save_file({k: v.contiguous() for k, v in io.items()}, out("ts_io.safetensors"))
    files = sorted(f for f in os.listdir(OUT) if f.startswith(("legacy_", "ts_")))
    for f in files:
        print(f"{f:32s} {os.path.getsize(out(f)) / 1e3:8.1f} kB")


if __name__ == "__main__":
    main()

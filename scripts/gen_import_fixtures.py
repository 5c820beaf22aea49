"""Fixtures for `gfa import`: crates/gfa-core/tests/fixtures/import_*.

Run with a Python that has torch 2.11, numpy and safetensors (CI does not run this):
    python scripts/gen_import_fixtures.py
    python scripts/gen_import_fixtures.py --io-only
The second form recomputes only import_io.safetensors's logits from the committed checkpoints and
`x` (a full run on another CPU writes BatchNorm running statistics that differ in their last bits,
and scripts/gen_torchscript_fixtures.py re-saves import_resnet18.pt's weights).

It writes small PyTorch checkpoints in the forms researchers save them, each of a reduced-width
model in its reference code's tensor names (the twins of scripts/pytorch_models.py with
`normalize = False`):

  import_resnet18.pt         torch.save(model.state_dict()), a model taking [0, 1] pixels;
  import_preact_resnet18.pt  {"state_dict": DataParallel(model).state_dict() ("module."
                             prefix), "epoch", "best_acc" (a NumPy scalar), "args" (an
                             argparse.Namespace), "optimizer": optimizer.state_dict()}, a model
                             trained on inputs its data loader normalized with CIFAR-10's
                             mean/std;
  import_wrn_28_10.pt        {"model": the state dict of torch.compile(model) ("_orig_mod."
                             prefix, written out here without compiling)};
  import_wrn_34_10.pt        the TRADES WideResNet-34-10 state dict, with the reference's unused
                             `sub_block1` block;
and inputs gfa must refuse, each with its own error:
  import_bad_torchscript.pt  torch.jit.save of a traced model;
  import_bad_legacy.pt       torch.save(..., _use_new_zipfile_serialization=False);
  import_bad_optimizer.pt    torch.save(optimizer.state_dict());
  import_bad_module.pt       torch.save(model) (a pickled module, not a state dict).

import_io.safetensors holds `x`, a fixed [2, 3, 32, 32] float32 batch in [0, 1], and
`<case>.logits`, the eval-mode logits of each PyTorch model on `x` (for the preact case, on x
normalized as its data loader did), in float64: the model converted with `.double()` (exact) on
`x` in double, the normalization's float32 mean/std converted too. import_meta.json lists each
case's gfa flags and what the import must report. The Rust test (crates/gfa-core/tests/it/
import.rs) imports each file, converts gfa's model to float64 and compares its logits on `x`
with these to a bound derived from float64 rounding (`REL_TOL` there).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import pytorch_models as pm  # noqa: E402
from gen_model_fixtures import CIFAR_MEAN, CIFAR_STD, randomize_batch_norm  # noqa: E402

OUT = os.path.join(HERE, "..", "crates", "gfa-core", "tests", "fixtures")


class TradesWideResNet34(pm.WideResNet34x10):
    """The TRADES WideResNet also builds `sub_block1` (same shapes as block1) and never uses it."""

    def __init__(self, spec):
        super().__init__(spec)
        n = (self.DEPTH - 4) // 6
        c0 = pm.scaled(16, spec["width"])
        c1 = pm.scaled(16 * self.WIDEN, spec["width"])
        self.sub_block1 = pm.NetworkBlock(n, c0, c1, 1)


def out(name):
    return os.path.join(OUT, name)


MEAN = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)


def float64_logits(model, x, normalized):
    """Eval-mode logits of `model` converted to float64 (a copy) on `x` in double; `normalized`:
    on `x` normalized with CIFAR-10's float32 mean/std, as the preact model's data loader did."""
    model = copy.deepcopy(model).double().eval()
    x = x.double()
    if normalized:
        x = (x - MEAN.double()) / STD.double()
    with torch.no_grad():
        return model(x)


def strip(sd, prefix):
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in sd.items()}


def io_only():
    """Recompute import_io.safetensors's logits from the committed checkpoints and `x`."""
    io = load_file(out("import_io.safetensors"))
    x = io["x"]
    load = lambda name: torch.load(out(f"import_{name}.pt"), map_location="cpu", weights_only=False)
    models = {
        "resnet18": (pm.build(dict(arch="resnet18", width=0.0625, normalize=False)),
                     load("resnet18"), False),
        "preact_resnet18": (pm.build(dict(arch="preact_resnet18", width=0.0625, normalize=False)),
                            strip(load("preact_resnet18")["state_dict"], "module."), True),
        "wrn_28_10": (pm.build(dict(arch="wrn_28_10", width=0.03125, normalize=False)),
                      strip(load("wrn_28_10")["model"], "_orig_mod."), False),
        "wrn_34_10": (TradesWideResNet34({**pm.DEFAULT_SPEC, "arch": "wrn_34_10", "width": 0.03125,
                                          "normalize": False}), load("wrn_34_10"), False),
    }
    for name, (model, state, normalized) in models.items():
        model.load_state_dict(state)
        io[f"{name}.logits"] = float64_logits(model, x, normalized)
    save_file({k: v.contiguous() for k, v in io.items()}, out("import_io.safetensors"))
    print(f"recomputed the float64 logits of {len(models)} checkpoints")


def main():
    if sys.argv[1:] == ["--io-only"]:
        io_only()
        return
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 32, 32, generator=gen)
    io = {"x": x}
    meta = {}
    mean, std = MEAN, STD

    def case(name, arch, width, model, obj, normalize, logits, **report):
        torch.save(obj, out(f"import_{name}.pt"))
        io[f"{name}.logits"] = logits
        meta[name] = {"arch": arch, "width": width, "normalize": normalize, **report}

    # kuangliu ResNet-18 on [0, 1] pixels, plain state dict.
    spec = dict(arch="resnet18", width=0.0625, normalize=False)
    m = pm.build(spec)
    randomize_batch_norm(m, gen)
    logits = float64_logits(m, x, False)
    case("resnet18", "resnet18", 0.0625, m, m.state_dict(), "none", logits,
         found_under=None, stripped=[], dropped=0)

    # PreAct ResNet-18 whose data loader normalized: a full training checkpoint.
    spec = dict(arch="preact_resnet18", width=0.0625, normalize=False)
    m = pm.build(spec)
    randomize_batch_norm(m, gen)
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    m.train()
    loss = m((torch.rand(4, 3, 32, 32, generator=gen) - mean) / std).logsumexp(1).mean()
    loss.backward()
    opt.step()  # momentum buffers in the optimizer state; the weights saved are the stepped ones
    m.eval()
    logits = float64_logits(m, x, True)
    ckpt = {
        "epoch": 7,
        "best_acc": np.float64(51.25),
        "args": argparse.Namespace(lr=0.1, arch="PreActResNet18", epsilon=8),
        "state_dict": torch.nn.DataParallel(m).state_dict(),
        "optimizer": opt.state_dict(),
    }
    case("preact_resnet18", "preact_resnet18", 0.0625, m, ckpt, "cifar10", logits,
         found_under="state_dict", stripped=["module."], dropped=0)

    # WideResNet-28-10 saved from a torch.compile'd model, under "model".
    spec = dict(arch="wrn_28_10", width=0.03125, normalize=False)
    m = pm.build(spec)
    randomize_batch_norm(m, gen)
    logits = float64_logits(m, x, False)
    sd = {f"_orig_mod.{k}": v for k, v in m.state_dict().items()}
    case("wrn_28_10", "wrn_28_10", 0.03125, m, {"model": sd}, "none", logits,
         found_under="model", stripped=["_orig_mod."], dropped=0)

    # TRADES WideResNet-34-10 with its unused sub_block1.
    spec = {**pm.DEFAULT_SPEC, "arch": "wrn_34_10", "width": 0.03125, "normalize": False}
    m = TradesWideResNet34(spec)
    randomize_batch_norm(m, gen)
    logits = float64_logits(m, x, False)
    sub = [k for k in m.state_dict() if k.startswith("sub_block1.")]
    case("wrn_34_10", "wrn_34_10", 0.03125, m, m.state_dict(), "none", logits,
         found_under=None, stripped=[], dropped=len(sub))

    # Inputs gfa refuses.
    tiny = torch.nn.Linear(4, 2)
    torch.jit.save(torch.jit.trace(tiny, torch.rand(1, 4)), out("import_bad_torchscript.pt"))
    torch.save(tiny.state_dict(), out("import_bad_legacy.pt"), _use_new_zipfile_serialization=False)
    opt = torch.optim.SGD(tiny.parameters(), lr=0.1, momentum=0.9)
    tiny(torch.rand(3, 4)).sum().backward()
    opt.step()
    torch.save(opt.state_dict(), out("import_bad_optimizer.pt"))
    torch.save(tiny, out("import_bad_module.pt"))

    save_file({k: v.contiguous() for k, v in io.items()}, out("import_io.safetensors"))
    with open(out("import_meta.json"), "w") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
        f.write("\n")
    files = [f for f in os.listdir(OUT) if f.startswith("import_")]
    sizes = {f: os.path.getsize(out(f)) for f in sorted(files)}
    for f, s in sizes.items():
        print(f"{f:32s} {s / 1e3:8.1f} kB")


if __name__ == "__main__":
    main()

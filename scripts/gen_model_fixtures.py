"""Golden fixtures for gfa's model zoo: crates/gfa-core/tests/fixtures/models_*.

Run with the project's Python venv (torch 2.11, safetensors):
    /root/.cache/gfa-pyenv/bin/python scripts/gen_model_fixtures.py
    /root/.cache/gfa-pyenv/bin/python scripts/gen_model_fixtures.py --io-only
The second form recomputes only the `_io` files from the committed states and input (the
BatchNorm running statistics come from float32 train-mode passes, whose last bits depend on the
CPU code path, so a full run on another CPU writes slightly different states).

For each small twin (scripts/pytorch_models.py) it writes
  models_<case>_state.safetensors  the state dict (float32), exactly as `model.state_dict()`
                                   names it;
  models_<case>_io.safetensors     in float64, computed by the model converted with `.double()`
                                   (exact) on `x` in double: `logits` (eval mode), `tap.<name>`
                                   (post-activation taps),
                                   `pre_tap.<name>` (pre-activation taps, only where they differ
                                   from the post-activation ones) and, for BatchNorm
                                   models, `train.logits` (train mode on the same batch, from the
                                   saved state) and `train.<bn>.running_mean|running_var|
                                   num_batches_tracked` of one BN layer after that forward;
and, shared by all cases,
  models_input.safetensors         `x`, a fixed [2, 3, 32, 32] float32 batch in [0, 1] (exact in
                                   double);
  models_meta.json                 each case's gfa `ModelSpec` and the parameter count of every
                                   full-size twin (default spec), for the Rust test to compare.
BatchNorm models get random affine parameters and running statistics from a few train-mode
passes on random data first, so eval mode really uses stored statistics.

The Rust side (crates/gfa-core/tests/it/models.rs) loads each state dict with `VarStore::load`,
converts the model to float64 and must reproduce logits, taps and BatchNorm buffers in double,
to a bound derived from float64 rounding (see `REL_TOL` there), on every libtorch CPU code path.
"""

from __future__ import annotations

import copy
import json
import os
import sys

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pytorch_models as pm  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "crates", "gfa-core", "tests", "fixtures")

CIFAR_MEAN = [0.4914, 0.4822, 0.4465]
CIFAR_STD = [0.2471, 0.2435, 0.2616]

# (case name, spec overrides, BN layer whose running stats are checked after a train pass)
CASES = [
    ("cnn", dict(arch="cnn", width=0.0625), None),
    ("mlp", dict(arch="mlp", width=0.5, widths=[32, 16], mean=CIFAR_MEAN, std=CIFAR_STD), None),
    ("resnet18", dict(arch="resnet18", width=0.0625, normalize=False), "layer2.0.shortcut.1"),
    (
        "preact_resnet18",
        dict(arch="preact_resnet18", width=0.0625, mean=CIFAR_MEAN, std=CIFAR_STD),
        "layer3.0.bn1",
    ),
    ("wrn_28_10", dict(arch="wrn_28_10", width=0.03125, normalize=False), "block2.layer.1.bn2"),
    ("wrn_34_10", dict(arch="wrn_34_10", width=0.03125, normalize=False), "block3.layer.4.bn1"),
]


def randomize_batch_norm(model, gen):
    """Non-trivial BN affine parameters and running statistics."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    if not bns:
        return
    with torch.no_grad():
        for m in bns:
            m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=gen))
            m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=gen))
        model.train()
        for _ in range(3):
            model(torch.rand(8, 3, 32, 32, generator=gen))
    model.eval()


def float64_io(model, x, bn_name):
    """The io file's tensors: `model` converted to float64 (a copy) on `x` in double."""
    model = copy.deepcopy(model).double().eval()
    x = x.double()
    io = {}
    with torch.no_grad():
        post, pre = [], []
        io["logits"] = model(x, post, "post_activation")
        model(x, pre, "pre_activation")
        for tap, a, b in zip(model.tap_names(), post, pre):
            io[f"tap.{tap}"] = a
            if not torch.equal(a, b):
                io[f"pre_tap.{tap}"] = b
        if bn_name is not None:
            model.train()
            io["train.logits"] = model(x)
            bn = model.get_submodule(bn_name)
            io[f"train.{bn_name}.running_mean"] = bn.running_mean.clone()
            io[f"train.{bn_name}.running_var"] = bn.running_var.clone()
            io[f"train.{bn_name}.num_batches_tracked"] = bn.num_batches_tracked.clone()
    return {k: v.contiguous() for k, v in io.items()}


def io_only():
    """Recompute every models_<case>_io.safetensors from the committed states and input."""
    x = load_file(os.path.join(OUT, "models_input.safetensors"))["x"]
    for name, overrides, bn_name in CASES:
        model = pm.build(overrides)
        model.load_state_dict(load_file(os.path.join(OUT, f"models_{name}_state.safetensors")))
        save_file(float64_io(model, x, bn_name), os.path.join(OUT, f"models_{name}_io.safetensors"))
    print(f"recomputed the float64 outputs of {len(CASES)} cases in {os.path.normpath(OUT)}")


def main():
    if sys.argv[1:] == ["--io-only"]:
        io_only()
        return
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 32, 32, generator=gen)
    save_file({"x": x}, os.path.join(OUT, "models_input.safetensors"))
    meta = {"cases": {}, "full_size_parameters": {}}
    for name, overrides, bn_name in CASES:
        model = pm.build(overrides)
        randomize_batch_norm(model, gen)
        model.eval()
        state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        save_file(state, os.path.join(OUT, f"models_{name}_state.safetensors"))
        save_file(float64_io(model, x, bn_name), os.path.join(OUT, f"models_{name}_io.safetensors"))
        meta["cases"][name] = {
            "spec": model.spec,
            "bn_checked_in_train": bn_name,
            "parameters": pm.num_parameters(model),
        }
    for arch in pm.ARCHS:
        meta["full_size_parameters"][arch] = pm.num_parameters(pm.build(arch=arch))
    with open(os.path.join(OUT, "models_meta.json"), "w") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
        f.write("\n")
    total = sum(
        os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT) if f.startswith("models_")
    )
    print(f"wrote {len(CASES)} cases to {os.path.normpath(OUT)} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()

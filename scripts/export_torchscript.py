"""Script a PyTorch model into a TorchScript file that `gfa eval --torchscript` evaluates.

Optional: gfa itself needs no Python. Run this wherever the model's Python code lives (another
machine is fine: the .pt file it writes is self-contained) with torch and the model's package:

    # a RobustBench zoo entry (pip install robustbench): its normalization is inside the model
    python scripts/export_torchscript.py --robustbench Carmon2019Unlabeled -o carmon.pt
    # a torchvision or timm model (ImageNet-sized inputs)
    python scripts/export_torchscript.py --torchvision resnet50 --input-shape 3x224x224 -o r50.pt
    python scripts/export_torchscript.py --timm resnet18.a1_in1k --input-shape 3x224x224 -o r18.pt
    # your own class: a module path, a constructor and (optionally) a state dict
    python scripts/export_torchscript.py --module mypkg.models:WideResNet --kwargs depth=28 \
        --weights ckpt.pt -o wrn.pt

then, on the machine with gfa:

    gfa eval --torchscript carmon.pt --attacks autoattack --eps 8/255 --n 1000

The model is put in eval mode and float32 on the CPU, scripted with torch.jit.script (traced with
torch.jit.trace on a probe batch when scripting fails: a traced model keeps only the path that
probe took, so data-dependent branches are frozen), saved, loaded back and checked: it must
return one tensor of logits [N, classes] on [0, 1] pixels, the same logits as the Python model.
A model that normalizes inside keeps doing so; one whose data loader normalized needs
`gfa eval --torchscript FILE --normalize cifar10` (or MEAN,STD).
"""

from __future__ import annotations

import argparse
import importlib
import sys

import torch


def parse_shape(text: str) -> list[int]:
    dims = [int(d) for d in text.lower().split("x")]
    if len(dims) != 3 or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"expected CxHxW, e.g. 3x32x32; got {text}")
    return dims


def parse_kwargs(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = int(value)
        except ValueError:
            try:
                out[key] = float(value)
            except ValueError:
                out[key] = value
    return out


def build(args) -> torch.nn.Module:
    if args.robustbench:
        from robustbench.utils import load_model

        return load_model(
            model_name=args.robustbench, dataset=args.dataset, threat_model=args.threat_model
        )
    if args.torchvision:
        import torchvision

        return torchvision.models.get_model(args.torchvision, weights="DEFAULT")
    if args.timm:
        import timm

        return timm.create_model(args.timm, pretrained=True)
    module, _, name = args.module.partition(":")
    model = getattr(importlib.import_module(module), name)(**parse_kwargs(args.kwargs))
    if args.weights:
        state = torch.load(args.weights, map_location="cpu", weights_only=True)
        for key in ("state_dict", "model", "net"):
            if isinstance(state, dict) and key in state and isinstance(state[key], dict):
                state = state[key]
                break
        state = {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in state.items()}
        model.load_state_dict(state)
    return model


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--robustbench", metavar="NAME", help="a RobustBench model name")
    src.add_argument("--torchvision", metavar="NAME", help="a torchvision model name")
    src.add_argument("--timm", metavar="NAME", help="a timm model name")
    src.add_argument("--module", metavar="PKG.MOD:CLASS", help="a class to construct")
    p.add_argument("--kwargs", nargs="*", default=[], metavar="K=V", help="--module arguments")
    p.add_argument("--weights", help="a torch.save state dict for --module")
    p.add_argument("--dataset", default="cifar10", help="RobustBench data set")
    p.add_argument("--threat-model", default="Linf", help="RobustBench threat model")
    p.add_argument("--input-shape", type=parse_shape, default=[3, 32, 32], help="CxHxW")
    p.add_argument("--trace", action="store_true", help="trace instead of script")
    p.add_argument("-o", "--out", required=True, help="the TorchScript file to write")
    args = p.parse_args()

    model = build(args).eval().float().cpu()
    for param in model.parameters():
        param.requires_grad_(False)
    probe = torch.rand(2, *args.input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model(probe)
    if not isinstance(want, torch.Tensor) or want.dim() != 2:
        print(f"the model returns {type(want).__name__}, not logits [N, classes]", file=sys.stderr)
        return 1
    scripted = None
    if not args.trace:
        try:
            scripted = torch.jit.script(model)
        except Exception as e:  # noqa: BLE001 - any scripting failure falls back to tracing
            print(f"torch.jit.script failed ({type(e).__name__}); tracing instead", file=sys.stderr)
    if scripted is None:
        scripted = torch.jit.trace(model, probe)
    torch.jit.save(scripted, args.out)
    back = torch.jit.load(args.out, map_location="cpu").eval()
    with torch.no_grad():
        got = back(probe)
    diff = (got - want).abs().max().item()
    if diff > 1e-5 * max(want.abs().max().item(), 1e-12):
        print(f"the saved module's logits differ from the model's by {diff:.3g}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: logits [N, {want.shape[1]}] on [0, 1] pixels {args.input_shape}")
    print(f"evaluate it with: gfa eval --torchscript {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

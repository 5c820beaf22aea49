"""PyTorch twins of gfa's models (crates/gfa-core/src/models), name for name.

A twin's `state_dict()` has exactly the tensor names of the gfa model built from the same spec
(`VarStore` names), so weights move both ways as safetensors:

    gfa -> PyTorch:  model.load_state_dict(safetensors.torch.load_file("final.safetensors"))
    PyTorch -> gfa:  safetensors.torch.save_file(model.state_dict(), "w.safetensors"), then
                     `vs.load("w.safetensors")` on the gfa model of the same spec.

`build(spec)` takes the spec as gfa writes it (the `[model]` table / `ModelSpec` JSON: arch,
width, widths, normalize, mean, std, num_classes, bias, and `input` = [C, H, W] when the images
are not CIFAR-10's [3, 32, 32]). With `normalize = True` the first layer is `Normalize` and its
buffers `normalize.mean` / `normalize.std` (shape [C]) are part of the state dict; with `normalize = False` the names are exactly those of the reference code (e.g.
kuangliu/pytorch-cifar's ResNet18), so their checkpoints load as they are.

`forward(x, taps=None, point="post_activation")` returns the logits and, when `taps` is a list,
appends the activation at every tap in the order of `tap_names()` (gfa's `forward_taps`, minus
the `input` tap, which is the normalized image). Docs: docs/models.md.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

DEFAULT_SPEC = {
    "arch": "cnn",
    "width": 1.0,
    "widths": [1024, 512, 256],
    "normalize": True,
    "mean": [0.5, 0.5, 0.5],
    "std": [0.5, 0.5, 0.5],
    "num_classes": 10,
    "bias": True,
    "input": [3, 32, 32],
}


def scaled(c: int, width: float) -> int:
    """gfa's `ModelSpec::scaled`: round half away from zero (Rust `f64::round`), at least 1."""
    return max(1, int(math.floor(c * width + 0.5)))


def _record(taps, point, pre, post):
    if taps is not None:
        taps.append(post if point == "post_activation" else pre)


def per_channel(values, channels):
    """gfa's rule: one value per channel, or one value (or equal values) for every channel."""
    if len(values) == channels:
        return list(values)
    if len(set(values)) == 1:
        return [values[0]] * channels
    raise ValueError(f"{values} do not fit {channels} channels")


class Normalize(nn.Module):
    """Per-channel (x - mean) / std; `mean`, `std` are buffers of shape [C]."""

    def __init__(self, mean, std, channels=3):
        super().__init__()
        self.register_buffer("mean", torch.tensor(per_channel(mean, channels), dtype=torch.float32))
        self.register_buffer("std", torch.tensor(per_channel(std, channels), dtype=torch.float32))

    def forward(self, x):
        return (x - self.mean.view(1, -1, 1, 1)) / self.std.view(1, -1, 1, 1)


class GfaModel(nn.Module):
    """Normalization (optional) followed by the network; subclasses implement `net`."""

    def __init__(self, spec):
        super().__init__()
        self.spec = spec
        self.channels = spec["input"][0]
        self.input_numel = math.prod(spec["input"])
        if spec["normalize"]:
            self.normalize = Normalize(spec["mean"], spec["std"], self.channels)

    def forward(self, x, taps=None, point="post_activation"):
        if self.spec["normalize"]:
            x = self.normalize(x)
        return self.net(x, taps, point)


class Linear(GfaModel):
    TAPS: list[str] = []

    def __init__(self, spec):
        super().__init__(spec)
        self.fc = nn.Linear(self.input_numel, spec["num_classes"], bias=spec["bias"])

    def net(self, x, taps, point):
        return self.fc(x.flatten(1))

    def tap_names(self):
        return []


class Mlp(GfaModel):
    def __init__(self, spec):
        super().__init__(spec)
        d_in = self.input_numel
        self.n_hidden = len(spec["widths"])
        for i, w in enumerate(spec["widths"]):
            d = scaled(w, spec["width"])
            setattr(self, f"fc{i + 1}", nn.Linear(d_in, d))
            d_in = d
        self.head = nn.Linear(d_in, spec["num_classes"])

    def net(self, x, taps, point):
        h = x.flatten(1)
        for i in range(self.n_hidden):
            pre = getattr(self, f"fc{i + 1}")(h)
            h = F.relu(pre)
            _record(taps, point, pre, h)
        return self.head(h)

    def tap_names(self):
        return [f"fc{i + 1}" for i in range(self.n_hidden)]


class Cnn(GfaModel):
    def __init__(self, spec):
        super().__init__(spec)
        w = spec["width"]
        c1, c2, f = scaled(64, w), scaled(128, w), scaled(256, w)
        self.conv1 = nn.Conv2d(self.channels, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c1, 3, padding=1)
        self.conv3 = nn.Conv2d(c1, c2, 3, padding=1)
        self.conv4 = nn.Conv2d(c2, c2, 3, padding=1)
        _, h, w_in = spec["input"]
        self.fc1 = nn.Linear(c2 * (h // 4) * (w_in // 4), f)
        self.fc2 = nn.Linear(f, f)
        self.fc3 = nn.Linear(f, spec["num_classes"])

    def net(self, x, taps, point):
        h = x
        for i, conv in enumerate([self.conv1, self.conv2, self.conv3, self.conv4]):
            pre = conv(h)
            h = F.relu(pre)
            _record(taps, point, pre, h)
            if i % 2 == 1:
                h = F.max_pool2d(h, 2)
        h = h.flatten(1)
        for fc in [self.fc1, self.fc2]:
            pre = fc(h)
            h = F.relu(pre)
            _record(taps, point, pre, h)
        return self.fc3(h)

    def tap_names(self):
        return ["conv1", "conv2", "conv3", "conv4", "fc1", "fc2"]


# --- ResNet-18 (kuangliu/pytorch-cifar models/resnet.py) -------------------------------------


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x):
        """Returns (residual sum, output after ReLU)."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        s = out + self.shortcut(x)
        return s, F.relu(s)


STAGES = [64, 128, 256, 512]


class ResNet18(GfaModel):
    def __init__(self, spec):
        super().__init__(spec)
        w = spec["width"]
        c = scaled(64, w)
        self.conv1 = nn.Conv2d(self.channels, c, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        for i, planes in enumerate(STAGES):
            c_out = scaled(planes, w)
            stride = 1 if i == 0 else 2
            blocks = [BasicBlock(c, c_out, stride), BasicBlock(c_out, c_out, 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            c = c_out
        self.linear = nn.Linear(c, spec["num_classes"])

    def net(self, x, taps, point):
        pre = self.bn1(self.conv1(x))
        h = F.relu(pre)
        _record(taps, point, pre, h)
        for i in range(4):
            for block in getattr(self, f"layer{i + 1}"):
                s, h = block(h)
            _record(taps, point, s, h)
        return self.linear(F.avg_pool2d(h, 4).flatten(1))

    def tap_names(self):
        return ["conv1", "layer1", "layer2", "layer3", "layer4"]


# --- PreAct ResNet-18 (Wong et al. 2020 / Rice et al. 2020 preactresnet.py) ------------------


class PreActBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False))

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if hasattr(self, "shortcut") else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet18(GfaModel):
    def __init__(self, spec):
        super().__init__(spec)
        w = spec["width"]
        c = scaled(64, w)
        self.conv1 = nn.Conv2d(self.channels, c, 3, stride=1, padding=1, bias=False)
        for i, planes in enumerate(STAGES):
            c_out = scaled(planes, w)
            stride = 1 if i == 0 else 2
            blocks = [PreActBlock(c, c_out, stride), PreActBlock(c_out, c_out, 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            c = c_out
        self.bn = nn.BatchNorm2d(c)
        self.linear = nn.Linear(c, spec["num_classes"])

    def net(self, x, taps, point):
        h = self.conv1(x)
        _record(taps, point, h, h)
        for i in range(4):
            h = getattr(self, f"layer{i + 1}")(h)
            _record(taps, point, h, h)
        pre = self.bn(h)
        h = F.relu(pre)
        _record(taps, point, pre, h)
        return self.linear(F.avg_pool2d(h, 4).flatten(1))

    def tap_names(self):
        return ["conv1", "layer1", "layer2", "layer3", "layer4", "bn"]


# --- WideResNet-28-10 / 34-10 (TRADES models/wideresnet.py, RobustBench WideResNet) ----------


class WrnBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.equalInOut = c_in == c_out
        self.convShortcut = (
            None if self.equalInOut else nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)
        )

    def forward(self, x):
        a = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(a))))
        return out + (x if self.equalInOut else self.convShortcut(a))


class NetworkBlock(nn.Module):
    def __init__(self, n, c_in, c_out, stride):
        super().__init__()
        self.layer = nn.Sequential(
            *[WrnBlock(c_in if i == 0 else c_out, c_out, stride if i == 0 else 1) for i in range(n)]
        )

    def forward(self, x):
        return self.layer(x)


class WideResNet(GfaModel):
    """WideResNet-DEPTH-10; the reference's unused `sub_block1` is not built."""

    DEPTH, WIDEN = 28, 10

    def __init__(self, spec):
        super().__init__(spec)
        w = spec["width"]
        n = (self.DEPTH - 4) // 6
        ch = [scaled(c, w) for c in [16, 16 * self.WIDEN, 32 * self.WIDEN, 64 * self.WIDEN]]
        self.conv1 = nn.Conv2d(self.channels, ch[0], 3, stride=1, padding=1, bias=False)
        self.block1 = NetworkBlock(n, ch[0], ch[1], 1)
        self.block2 = NetworkBlock(n, ch[1], ch[2], 2)
        self.block3 = NetworkBlock(n, ch[2], ch[3], 2)
        self.bn1 = nn.BatchNorm2d(ch[3])
        self.fc = nn.Linear(ch[3], spec["num_classes"])
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                k = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                m.weight.data.normal_(0, math.sqrt(2.0 / k))
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()
            elif isinstance(m, nn.Linear):
                m.bias.data.zero_()

    def net(self, x, taps, point):
        h = self.conv1(x)
        _record(taps, point, h, h)
        for blk in [self.block1, self.block2, self.block3]:
            h = blk(h)
            _record(taps, point, h, h)
        pre = self.bn1(h)
        h = F.relu(pre)
        _record(taps, point, pre, h)
        return self.fc(F.avg_pool2d(h, 8).flatten(1))

    def tap_names(self):
        return ["conv1", "block1", "block2", "block3", "bn1"]


class WideResNet28x10(WideResNet):
    DEPTH = 28


class WideResNet34x10(WideResNet):
    DEPTH = 34


ARCHS = {
    "linear": Linear,
    "mlp": Mlp,
    "cnn": Cnn,
    "preact_resnet18": PreActResNet18,
    "wrn_28_10": WideResNet28x10,
    "wrn_34_10": WideResNet34x10,
    "resnet18": ResNet18,
}


def build(spec: dict | None = None, **overrides) -> GfaModel:
    """The twin of gfa's `Classifier::new(spec)`; missing keys take gfa's defaults."""
    full = {**DEFAULT_SPEC, **(spec or {}), **overrides}
    return ARCHS[full["arch"]](full)


def num_parameters(model: nn.Module) -> int:
    """Trainable scalars (gfa's `Classifier::num_parameters`; buffers excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


if __name__ == "__main__":
    for name in ARCHS:
        m = build(arch=name)
        print(f"{name:16s} {num_parameters(m):>10d}  taps: input {' '.join(m.tap_names())}")

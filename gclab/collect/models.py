"""Model zoo: a plain MLP (the networks of the paper and of Theorem 5.1), a small CNN, and
the width-k ResNet-18 of Nakkiran et al.'s deep double descent.

The MLP is deliberately ``nn.Sequential(Flatten, Linear, act, ..., Linear)``: the metric
engine walks ``model.modules()`` and relies on exactly that structure.
"""

from __future__ import annotations

import math

import torch
from torch import nn

MODELS = ("mlp", "cnn", "resnet18")
ACTIVATIONS = ("relu", "tanh", "gelu", "elu")
_ACT_MODULES = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "elu": nn.ELU}
# Defaults when width/depth are None; ResNet-18's depth is fixed by its name.
_DEFAULT_WIDTH = {"mlp": 256, "cnn": 16, "resnet18": 64}
_DEFAULT_DEPTH = {"mlp": 2, "cnn": 2}


def make_activation(name: str) -> nn.Module:
    if name not in _ACT_MODULES:
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")
    return _ACT_MODULES[name]()


def build_mlp(
    d_in: int, n_out: int, width: int, depth: int, activation: str = "relu", bias: bool = True
) -> nn.Sequential:
    """``depth`` hidden layers of ``width`` units; depth=0 is a linear model."""
    layers: list[nn.Module] = [nn.Flatten()]  # no-op on (n, d) inputs, flattens images
    fan_in = d_in
    for _ in range(depth):
        layers += [nn.Linear(fan_in, width, bias=bias), make_activation(activation)]
        fan_in = width
    layers.append(nn.Linear(fan_in, n_out, bias=bias))
    return nn.Sequential(*layers)


def _as_image_shape(input_shape: tuple) -> tuple[int, int, int]:
    """(d,) -> (1, 1, d); (H, W) -> (1, H, W); (C, H, W) unchanged."""
    if len(input_shape) == 1:
        return (1, 1, input_shape[0])
    if len(input_shape) == 2:
        return (1, *input_shape)
    if len(input_shape) == 3:
        return tuple(input_shape)
    raise ValueError(f"input_shape must have 1, 2 or 3 dims, got {input_shape}")


def build_cnn(
    input_shape: tuple, n_out: int, width: int, depth: int, activation: str = "relu", bias: bool = True
) -> nn.Sequential:
    """``depth`` blocks Conv2d(3x3, same padding) -> act -> MaxPool(2), channels doubling
    from ``width``; then Flatten -> Linear. 1-D inputs such as MNIST-1D (40,) are viewed
    as 1x40 images with 1x3 kernels, so only Conv2d/Linear carry parameters throughout.
    Along an axis of size 1 the kernel and pool are 1; pooling stops once an axis is 1.
    A flattened image (784,) is a 1x784 signal here: load MNIST with flatten=False."""
    c, h, w = _as_image_shape(tuple(input_shape))
    layers: list[nn.Module] = []
    if tuple(input_shape) != (c, h, w):
        layers += [nn.Flatten(), nn.Unflatten(1, (c, h, w))]
    for i in range(depth):
        c_out = width * 2**i
        kernel = (3 if h > 1 else 1, 3 if w > 1 else 1)
        pad = (kernel[0] // 2, kernel[1] // 2)
        layers += [nn.Conv2d(c, c_out, kernel, padding=pad, bias=bias), make_activation(activation)]
        pool = (2 if h >= 2 else 1, 2 if w >= 2 else 1)
        if pool != (1, 1):
            layers.append(nn.MaxPool2d(pool))
            h, w = h // pool[0], w // pool[1]
        c = c_out
    layers += [nn.Flatten(), nn.Linear(c * h * w, n_out, bias=bias)]
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs with BatchNorm) and a 1x1 projection shortcut
    when the shape changes; convs have no bias because BatchNorm supplies one."""

    def __init__(self, c_in: int, c_out: int, stride: int, activation: str):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.act1 = make_activation(activation)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.act2 = make_activation(activation)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class ResNet18(nn.Module):
    """CIFAR-style ResNet-18 (3x3 stem, no max-pool) with widths k, 2k, 4k, 8k as in
    Nakkiran et al. (2020); k=64 is the standard network. Global average pooling makes it
    accept any image size (28x28 as well as 32x32)."""

    def __init__(self, in_channels: int, n_out: int, k: int = 64, activation: str = "relu", bias: bool = True):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, k, 3, padding=1, bias=False), nn.BatchNorm2d(k), make_activation(activation)
        )
        blocks, c = [], k
        for i, stride in enumerate((1, 2, 2, 2)):
            c_out = k * 2**i
            blocks += [BasicBlock(c, c_out, stride, activation), BasicBlock(c_out, c_out, 1, activation)]
            c = c_out
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, n_out, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:  # (n, H, W) grayscale
            x = x.unsqueeze(1)
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


def _positive_int(name: str, what: str, value, minimum: int) -> int:
    try:
        ok = not isinstance(value, bool) and int(value) == value and value >= minimum
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{name}: {what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def build_model(
    name: str,
    *,
    input_shape,
    n_out: int,
    width: int | None = None,
    depth: int | None = None,
    activation: str = "relu",
    bias: bool = True,
    width_multiplier: int | None = None,
) -> nn.Module:
    """Build model ``name`` (one of ``MODELS``) for inputs of ``input_shape`` (no batch
    dim) and ``n_out`` outputs (logits).

    - mlp: ``depth`` hidden layers (default 2; 0 = linear) of ``width`` units (default 256).
    - cnn: ``depth`` conv blocks (default 2), first conv with ``width`` channels (default 16).
    - resnet18: ``width`` is Nakkiran et al.'s k (default 64); ``depth`` must be None or 18;
      image inputs only, ``bias`` applies to the final Linear.
    ``width_multiplier`` is an alias of ``width`` (reads naturally for the ResNet k).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(MODELS)}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
    if width_multiplier is not None:
        if width is not None and width != width_multiplier:
            raise ValueError(f"{name}: width={width} and width_multiplier={width_multiplier} disagree")
        width = width_multiplier
    width = _positive_int(name, "width", _DEFAULT_WIDTH[name] if width is None else width, 1)
    n_out = _positive_int(name, "n_out", n_out, 1)
    input_shape = tuple(int(s) for s in input_shape)
    if not input_shape or any(s < 1 for s in input_shape):
        raise ValueError(f"{name}: input_shape must be non-empty and positive, got {input_shape}")

    if name == "mlp":
        depth = _positive_int(name, "depth", _DEFAULT_DEPTH[name] if depth is None else depth, 0)
        return build_mlp(math.prod(input_shape), n_out, width, depth, activation, bias)
    if name == "cnn":
        depth = _positive_int(name, "depth", _DEFAULT_DEPTH[name] if depth is None else depth, 1)
        return build_cnn(input_shape, n_out, width, depth, activation, bias)
    if depth not in (None, 18):
        raise ValueError(f"resnet18: depth is fixed at 18, got {depth}")
    if len(input_shape) not in (2, 3):
        raise ValueError(
            f"resnet18: needs image inputs (C, H, W) or (H, W), got {input_shape}; use mlp or cnn for vector data"
        )
    in_channels = 1 if len(input_shape) == 2 else input_shape[0]
    return ResNet18(in_channels, n_out, width, activation, bias)

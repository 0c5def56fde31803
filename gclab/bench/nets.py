"""The bench catalogue: every net `make bench` times, with its input shape, batch size and target family
(docs/METRICS.md, "Measuring: `make bench`", "Bench catalogue"). Every bench section reads this one registry.

A net is built fresh, float32, seeded, in eval mode by the caller; its data is Gaussian inputs of
``input_shape`` and uniform labels in ``range(k)``::

    net = NETS["cnn_stride2"]
    model = net.model()                 # nn.Module, (b, *input_shape) -> (b, k)
    x, y = net.data()                   # x: (b, *input_shape) float32, y: (b,) int64

``family`` keys the targets table (gclab/bench/targets.py); ``rounds`` is how many interleaved
timing rounds the full bench gives the net (fewer on the slow nets, so `make bench` stays short on 2 cores).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from gclab.collect.models import build_model

K = 10  # classes of every catalogue net


@dataclass(frozen=True)
class BenchNet:
    name: str
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    batch: int
    family: str
    rounds: int
    description: str
    k: int = K

    def model(self, *, dtype: torch.dtype = torch.float32, seed: int = 0) -> nn.Module:
        """A fresh net in eval mode (the engine's per-example quantities are eval-mode functions)."""
        torch.manual_seed(seed)
        return self.build().to(dtype).eval()

    def data(
        self, *, batch: int | None = None, dtype: torch.dtype = torch.float32, seed: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (b, *input_shape), y: (b,) — the same tensors for the same arguments."""
        g = torch.Generator().manual_seed(seed)
        b = self.batch if batch is None else batch
        return torch.randn(b, *self.input_shape, generator=g, dtype=dtype), torch.randint(0, self.k, (b,), generator=g)


NETS: dict[str, BenchNet] = {}


def register_net(net: BenchNet) -> BenchNet:
    if net.name in NETS:
        raise ValueError(f"bench net {net.name!r} is already in the catalogue; give the new one another name")
    NETS[net.name] = net
    return net


class ViTTiny(nn.Module):
    """Patch-embedding conv → positional nn.Parameter → pre-LN encoder blocks (nn.LayerNorm,
    nn.MultiheadAttention, GELU MLP) → LayerNorm → mean over tokens → Linear. (b, C, H, W) -> (b, k)."""

    def __init__(
        self, in_channels: int = 3, image: int = 16, patch: int = 4, dim: int = 32, depth: int = 2, k: int = K
    ):
        super().__init__()
        n_tokens = (image // patch) ** 2
        self.embed = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.pos = nn.Parameter(0.02 * torch.randn(1, n_tokens, dim))
        self.blocks = nn.ModuleList(EncoderBlock(dim, heads=4) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x).flatten(2).transpose(1, 2) + self.pos  # (b, T, dim)
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h).mean(1))


class EncoderBlock(nn.Module):
    """Pre-LN transformer block: h + MHA(LN(h)), then h + MLP(LN(h)) with a GELU MLP of width 2·dim."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        a = self.ln1(h)
        h = h + self.attn(a, a, a, need_weights=False)[0]
        return h + self.mlp(self.ln2(h))


class LSTMClassifier(nn.Module):
    """nn.LSTM over a continuous sequence, Linear head on the last hidden state. (b, T, d) -> (b, k)."""

    def __init__(self, d: int = 8, hidden: int = 64, k: int = K):
        super().__init__()
        self.lstm = nn.LSTM(d, hidden, batch_first=True)
        self.head = nn.Linear(hidden, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


def _cnn_stride2() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, K),
    )


def _conv1d() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(4, 16, 5, padding=2),
        nn.GroupNorm(4, 16),
        nn.ReLU(),
        nn.Conv1d(16, 32, 5, stride=2, padding=2),
        nn.GroupNorm(4, 32),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 32, K),
    )


register_net(
    BenchNet(
        "mlp",
        lambda: build_model("mlp", input_shape=(40,), n_out=K, width=256, depth=2),
        (40,),
        128,
        "mlp",
        21,
        "MLP 40-256-256-10",
    )
)
register_net(
    BenchNet(
        "cnn",
        lambda: build_model("cnn", input_shape=(3, 16, 16), n_out=K, width=16, depth=2),
        (3, 16, 16),
        64,
        "conv",
        21,
        "CNN 2×(conv3×3, ReLU, max-pool) 16-32, Linear",
    )
)
register_net(
    BenchNet(
        "cnn_stride2", _cnn_stride2, (3, 16, 16), 64, "conv", 21, "CNN 3 convs 3×3 (two stride 2) 16-32-32, no pooling"
    )
)
register_net(
    BenchNet(
        "residual",
        lambda: build_model("resnet18", input_shape=(3, 16, 16), n_out=K, width=4),
        (3, 16, 16),
        64,
        "conv",
        15,
        "ResNet-18 width 4, eval BatchNorm",
    )
)
register_net(
    BenchNet(
        "resnet18_quarter",
        lambda: build_model("resnet18", input_shape=(3, 32, 32), n_out=K, width=16),
        (3, 32, 32),
        32,
        "resnet18_quarter",
        9,
        "ResNet-18 width 16 (¼), eval BatchNorm",
    )
)
register_net(
    BenchNet(
        "vit_tiny",
        ViTTiny,
        (3, 16, 16),
        64,
        "transformer",
        11,
        "ViT-tiny: 4×4 patches (16 tokens), dim 32, 2 pre-LN blocks, 4 heads, GELU MLP 64, mean pool",
    )
)
register_net(
    BenchNet(
        "lstm",
        LSTMClassifier,
        (16, 8),
        64,
        "lstm",
        11,
        "LSTM d 8 → hidden 64 over 16 steps, Linear head on the last state; GC w.r.t. the input sequence",
    )
)
register_net(
    BenchNet(
        "conv1d",
        _conv1d,
        (4, 64),
        64,
        "conv",
        15,
        "Conv1d 4-16-32 (k 5, second stride 2) with GroupNorm(4), Linear",
    )
)

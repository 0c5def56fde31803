"""What the one pass hands to every metric: the per-layer signals and the input cotangents
(docs/METRICS.md, "One pass"). A leaf module: the three pass implementations (``chain``,
``tape``, and capture's autograd path) build these, the metrics read them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from gclab.collect.metrics.rules import Rule

# A cotangent spec: None = the k one-hot rows (row i is ∂f^i), else out (b,k) -> rows (m,b,k).
Cotangents = Callable[[Tensor], Tensor] | None


@dataclass
class LayerSignal:
    name: str
    module: nn.Module
    rule: Rule
    ctx: Any  # rule.prepare(h_l)
    delta: Tensor  # (m, b, *out): ∂ rows / ∂ z_l
    # (R (m, n), M (b, n) or None for ones) with delta[i, x] = R[i] ⊙ M[x], where the pass knows this
    # structure (the one-hot rows at a dense stack's top two layers): rules may reduce R and M instead.
    factors: tuple[Tensor, Tensor | None] | None = None


@dataclass
class Pass:
    out: Tensor  # (b, k) model outputs, detached
    layers: list[LayerSignal]  # one per layer with trainable parameters that ran
    gx: Tensor | None  # (m, b, *x.shape[1:]): ∂ rows / ∂ x
    unused: list[nn.Parameter]  # trainable parameters of layers that did not run
    fallback: tuple[str, ...] = ()  # labels of the layers the generic fallback covered (capture.Plan)
    method: str = ""  # how the rows were back-propagated: plan.CHAIN, TAPE or BATCHED_VJP (set by run_pass)


def check_out(out: Tensor, b: int) -> None:
    """Refuse a model output that is not one row of logits per example."""
    if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != b:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"model output must be a (batch, k) tensor of logits, got {shape}")


def onehot_rows(out: Tensor) -> Tensor:
    """The k one-hot cotangent rows (k, b, k) for outputs ``out`` (b, k), as a broadcast view."""
    b, k = out.shape
    return torch.eye(k, dtype=out.dtype, device=out.device).unsqueeze(1).expand(k, b, k)

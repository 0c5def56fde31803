"""A bare parameter added to a batch-first tensor (docs/METRICS.md, "Which models"): r = X + P,
e.g. a transformer's positional embedding ``h + self.pos``. P broadcasts over the batch, so an
example's gradient of P is its row of the cotangent of r summed over the dimensions P was
broadcast along: no per-example forward is needed. The autograd path watches the forward
(``generic.py``): a parameter of a module without a rule whose only use is one such add gets this
rule, with a zero probe added to r for its cotangent; any other use leaves it to the fallback.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gclab.collect.metrics.rules import Rule, sq

ADDS = (torch.add, Tensor.add, Tensor.__add__, Tensor.__radd__)


def added_result(func, args: tuple, kwargs: dict, bare: dict[int, str], b: int) -> tuple[int, Tensor] | None:
    """(id of the bare parameter, X + P) when the call adds one bare parameter P to a batch-first X of
    batch b (b the size of axis 0 and of no other axis) that P broadcasts into without touching the
    batch axis; else None."""
    if func not in ADDS or len(args) != 2 or kwargs:
        return None
    for p, other in (args, args[::-1]):
        if id(p) not in bare or not isinstance(other, Tensor) or id(other) in bare or not isinstance(p, Tensor):
            continue
        # The batch must be axis 0 and only there: a time-major (T, b, d) tensor with T = b is not batch-first.
        if other.dim() < 1 or other.shape[0] != b or b in other.shape[1:] or p.dim() > other.dim():
            return None
        if p.dim() == other.dim() and p.shape[0] != 1:
            return None
        r = func(*args)
        return (id(p), r) if r.shape == other.shape else None
    return None


@dataclass(frozen=True)
class AddedContext:
    """The dimensions of the probe (after batch) P was broadcast along, and P's shape."""

    dims: tuple[int, ...]
    shape: torch.Size


class AddedParameterRule(Rule):
    """``delta``: the cotangents of r = X + P (m, b, *r[1:]); ``h``: r itself (only its shape is read)."""

    param_names = ()

    def __init__(self, name: str, param: nn.Parameter):  # not a module's rule: no super().__init__(module)
        self.module = None
        self.trainable = {name: param}
        self.param = param

    def prepare(self, h: Tensor) -> AddedContext:
        inner = h.shape[1:]
        shape = self.param.shape[1:] if self.param.dim() == h.dim() else self.param.shape  # drop P's batch axis of 1
        aligned = (1,) * (len(inner) - len(shape)) + tuple(shape)
        dims = tuple(i for i, (n, s) in enumerate(zip(inner, aligned)) if s == 1 and n != 1)
        return AddedContext(dims, self.param.shape)

    def per_example(self, ctx, delta):
        m, b = delta.shape[:2]
        g = delta.sum([2 + i for i in ctx.dims], keepdim=True) if ctx.dims else delta
        return g.reshape(m, b, -1)

    def sq_norms(self, ctx, delta):
        return sq(self.per_example(ctx, delta), -1)

    def grads(self, ctx, delta):
        (name,) = self.trainable
        return {name: self.per_example(ctx, delta[None])[0].sum(0).reshape(ctx.shape)}

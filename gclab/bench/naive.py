"""The two obvious ways to get exact per-example GC, ||∂f(x_i)/∂x_i||_F², that the engine must beat
(docs/METRICS.md, "Bench catalogue"). Both need a net that treats examples independently (eval mode),
so that the gradient of a logit summed over the batch gives every example's own row.

- ``gc_per_logit``: one forward, then one ``torch.autograd.grad`` per logit (k backward passes to x);
- ``gc_batched_vjp``: one forward, then one batched VJP over the k one-hot rows
  (``torch.autograd.grad(..., is_grads_batched=True)``, vmap over the backward).

Shapes: x (b, *input_shape) → GC per example (b,).
"""

from __future__ import annotations

import torch
from torch import nn


def gc_per_logit(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    out = model(x)
    k = out.shape[1]
    gc = torch.zeros(x.shape[0], dtype=x.dtype)
    for i in range(k):
        (g,) = torch.autograd.grad(out[:, i].sum(), x, retain_graph=i < k - 1)
        gc += g.square().flatten(1).sum(1)
    return gc


def gc_batched_vjp(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    out = model(x)
    b, k = out.shape
    rows = torch.eye(k, dtype=out.dtype).unsqueeze(1).expand(k, b, k)  # (k, b, k): one-hot row i for every example
    (g,) = torch.autograd.grad(out, x, grad_outputs=rows, is_grads_batched=True)  # (k, b, *input_shape)
    return g.square().flatten(2).sum((0, 2))


NAIVE = {"naive_grad_per_logit": gc_per_logit, "naive_batched_vjp": gc_batched_vjp}

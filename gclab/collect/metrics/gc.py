"""Geometric complexity (paper Def. 2.1): per-example ||∇_x f(x)||_F², f = logits."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from gclab.collect.metrics.capture import run_pass


def geometric_complexity(
    model: nn.Module,
    x: Tensor,
    *,
    n_projections: int | None = None,
    generator: torch.Generator | None = None,
    gc_input: str | None = None,
) -> Tensor:
    """Per-example ||∇_x f(x)||_F², shape (b,); GC of the batch is its mean.

    ``n_projections=None``: exact, the k one-hot vector-Jacobian products in one batched
    backward. An int n: the Hutchinson estimate (unbiased; see
    ``geometric_complexity_estimate`` for its standard error). ``gc_input``: the submodule whose
    output is the GC input (token models: the embedding; docs/METRICS.md, "Token models")."""
    if n_projections is None:
        with torch.inference_mode():  # as in step_terms; the result below is made outside it, a normal tensor
            p = run_pass(model, x, None, need_input=True, need_layers=False, reuse_buffers=True, gc_input=gc_input)
        return row_sq_norms(p.gx, x.shape[0]).sum(0)
    return geometric_complexity_estimate(model, x, n_projections, generator=generator, gc_input=gc_input)[0]


def row_sq_norms(gx: Tensor, b: int) -> Tensor:
    """(m, b): ||row i of ∂f/∂x at example x||² from the input cotangents gx (m, b, *x)."""
    # Reduce the contiguous axis first: 2.5x faster than one reduction over (rows, features).
    # evidence: make bench metrics (GC alone) and peers/cnn_stride2 (docs/METRICS.md "Measuring: `make bench`")
    return torch.linalg.vector_norm(gx.reshape(gx.shape[0], b, -1), dim=2).square_()


def n_draws(n_projections: int) -> int:
    """The number of Hutchinson draws as an int (the one check of every `n_projections`)."""
    n = int(n_projections)
    if n < 1:
        raise ValueError(f"n_projections must be >= 1 (or None for the exact value), got {n_projections}")
    return n


def projection_rows(out: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor:
    """(n, b, k) cotangents, each row uniform on the sphere of radius sqrt(k): E[v vᵀ] = I."""
    b, k = out.shape
    dev = generator.device if generator is not None else out.device
    v = torch.randn(n, b, k, generator=generator, dtype=out.dtype, device=dev).to(out.device)
    return v * (math.sqrt(k) / v.norm(dim=-1, keepdim=True))


def geometric_complexity_estimate(
    model: nn.Module,
    x: Tensor,
    n_projections: int,
    *,
    generator: torch.Generator | None = None,
    gc_input: str | None = None,
) -> tuple[Tensor, Tensor]:
    """Hutchinson / random-projection estimate of per-example GC and its standard error.

    Per example, n independent v uniform on the sphere of radius sqrt(k) (so E[v vᵀ] = I):
    ``E ||vᵀ ∇_x f||² = ||∇_x f||_F²``. Returns (mean over the n draws, std(ddof=1)/sqrt(n));
    the standard error is NaN for n = 1. All n VJPs run in one batched backward."""
    n = n_draws(n_projections)
    rows = lambda out: projection_rows(out, n, generator)  # noqa: E731
    with torch.inference_mode():  # as in geometric_complexity
        p = run_pass(model, x, rows, need_input=True, need_layers=False, reuse_buffers=True, gc_input=gc_input)
    est = row_sq_norms(p.gx, x.shape[0])
    stderr = est.std(0) / math.sqrt(n) if n > 1 else torch.full_like(est[0], math.nan)
    return est.mean(0), stderr

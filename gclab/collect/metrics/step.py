"""Per-step metrics (paper Eq. 6–8, docs/METRICS.md) and the optimizer's gradient, from ONE pass.

From the k one-hot rows δ_l^i of the one pass:
- ``||∇_θ f^i(x)||² = Σ_l ghost_l(δ_l^i(x), h_l(x))``;
- the residual row is a linear combination of them, ``δ_l^ε(x) = Σ_i ε_x^i δ_l^i(x)``
  (a VJP is linear in its cotangent), so ``∇_θ L_x`` needs no extra backward: its norm is
  the ghost norm of ``δ^ε`` and the batch gradient is ``1/b Σ_x δ_l^ε(x) h_l(x)ᵀ``;
- R_B = 1/b² Σ_x Σ_i (ε^i)² ||∇f^i||², A_B = 1/b² Σ_x (||∇L_x||² − Σ_i (ε^i)² ||∇f^i||²),
  C_B = ||∇L_B||² − 1/b² Σ_x ||∇L_x||²; so ||∇L_B||² = R_B + A_B + C_B by construction and
  the tests check each term against brute force separately.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gclab.collect.losses import check_loss, residuals
from gclab.collect.metrics.capture import run_pass
from gclab.collect.metrics.gc import n_draws, projection_rows, row_sq_norms

KEYS = (
    "gc",
    "grad_norm_sq",
    "residual_term",
    "label_alignment",
    "batch_alignment",
    "per_example_grad_norm_sq",
    "train_loss",
    "train_acc",
)


def step_terms(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    loss: str = "cross_entropy",
    set_grad: bool = False,
    n_projections: int | None = None,
    generator: torch.Generator | None = None,
    gc_input: str | None = None,
) -> dict[str, Tensor]:
    """Tensor version of ``step_metrics`` with per-example detail:
    scalars (0-dim, float64): the eight ``step_metrics`` keys (plus ``gc_stderr`` with projections);
    per example (b,): ``gc_x``, ``per_example_grad_sq`` (||∇_θ L_x||²), ``loss_x``; (b, k):
    ``logit_grad_sq`` (||∇_θ f^i(x)||², NaN with projections), ``residual`` (ε)."""
    scalars, detail = _terms(model, x, y, loss, set_grad, n_projections, generator, gc_input)
    # Clones: tensors made in inference mode are read-only outside it; these are the caller's.
    detail = {key: v.clone() for key, v in detail.items()}
    return {**{key: torch.tensor(v, dtype=torch.float64) for key, v in scalars.items()}, **detail}


def _terms(
    model, x, y, loss, set_grad, n_projections, generator, gc_input=None
) -> tuple[dict[str, float], dict[str, Tensor]]:
    """``step_terms`` as (the scalars as Python floats, the per-example tensors)."""
    check_loss(loss)
    n = None if n_projections is None else n_draws(n_projections)
    saved = {}
    rows = None if n is None else _hutchinson_rows(y, loss, n, generator, saved)
    # The pass is reduced here, so its large tensors may live in the per-thread workspace, and it runs
    # in inference mode: no view tracking or version counters (docs/METRICS.md, "One pass").
    with torch.inference_mode():
        p = run_pass(model, x, rows, need_input=True, need_layers=True, reuse_buffers=True, gc_input=gc_input)
        out = p.out
        eps, loss_x, correct = saved["res"] if n is not None else residuals(out, y, loss)
        S, pe_b, grads, params = _layer_sums(p, eps, n)
        gc_x, e2S_x, logit_sq, extra = _gc_terms(p, eps, S, n)
        scalars, detail = _reduce(out, eps, gc_x, e2S_x, pe_b, loss_x, correct, grads, logit_sq)
    if set_grad:
        _write_grads(params, grads, p.unused)
    return {**scalars, **extra}, detail


def _hutchinson_rows(y, loss, n, generator, saved):
    """The 2n + 1 rows of Hutchinson mode: n rows v (GC), n rows v ⊙ ε (R_B:
    E||Σ_i v_i ε_i ∇f^i||² = Σ_i ε_i² ||∇f^i||²), one row ε/b (the loss gradient)."""

    def rows(out: Tensor) -> Tensor:
        saved["res"] = residuals(out, y, loss)
        v = projection_rows(out, n, generator)
        eps = saved["res"][0]
        return torch.cat([v, v * eps, (eps / out.shape[0])[None]])

    return rows


def _layer_sums(p, eps: Tensor, n: int | None):
    """Summed over layers: S (exact: ||∇_θ f^i(x)||² (k, b); Hutchinson: ||∇_θ (v⊙ε)ᵀf||² (n, b)),
    ||∇_θ L_x||²/b² (b,), and the batch gradients with their parameters."""
    b, k = p.out.shape
    # Exact: the k one-hot rows, mixed by ε/b. Hutchinson: rows n..2n (v ⊙ ε) and row 2n (ε/b) mixed by one-hot.
    w = eps / b if n is None else F.one_hot(torch.full((b,), n, device=p.out.device), n + 1).to(p.out.dtype)
    S, pe_b, grads, params = None, None, [], []
    for s in p.layers:
        if n is None:
            S_l, pe_l, g_l = s.rule.row_terms(s.ctx, s.delta, w, s.factors)
        else:
            S_l, pe_l, g_l = s.rule.row_terms(s.ctx, s.delta[n:], w)
            S_l = S_l[:n]
        # Out of place: a rule may hand back a tensor it keeps.
        S = S_l if S is None else S + S_l
        pe_b = pe_l if pe_b is None else pe_b + pe_l
        for name, g in g_l.items():
            grads.append(g)
            params.append(s.rule.trainable[name])
    if S is None:  # no trainable layer ran
        S, pe_b = p.out.new_zeros(k if n is None else n, b), p.out.new_zeros(b)
    return S, pe_b, grads, params


def _gc_terms(p, eps: Tensor, S: Tensor, n: int | None):
    """(gc_x (b,), Σ_i (ε^i)² ||∇f^i||² per example (b,), ||∇_θ f^i(x)||² (b, k) or NaN, extra scalars)."""
    b = p.out.shape[0]
    if n is None:
        return row_sq_norms(p.gx, b).sum(0), (eps.square() * S.T).sum(1), S.T, {}
    draws = row_sq_norms(p.gx[:n], b).double()  # (n, b) unbiased GC samples
    stderr = float(draws.mean(1).std() / math.sqrt(n)) if n > 1 else math.nan
    return draws.mean(0).to(p.out.dtype), S.sum(0) / n, torch.full_like(eps, math.nan), {"gc_stderr": stderr}


def _reduce(out, eps, gc_x, e2S_x, pe_b, loss_x, correct, grads, logit_sq):
    """The step's scalars (Eq. 6–8) and per-example detail from the per-example terms."""
    b = out.shape[0]
    # Every batch sum in float64 from one (5, b) stack: one conversion, one reduction, one read-back
    # (the small ops, not the arithmetic, are what this tail costs). mse has no accuracy: gc_x fills its slot.
    cols = [gc_x, e2S_x, pe_b, loss_x, gc_x if correct is None else correct.to(out.dtype)]
    gc_sum, e2S_sum, pe_sum, loss_sum, hits = torch.stack(cols).double().sum(1).tolist()
    # ||∇L_B||² from one norm per gradient, in one call (the kernel clip_grad_norm_ uses).
    norms = torch.stack(torch._foreach_norm(grads)).double().tolist() if grads else []  # pyright: ignore[reportPrivateImportUsage]
    gsq = math.fsum(v * v for v in norms)
    e2S = e2S_sum / b**2
    scalars = {
        "gc": gc_sum / b,
        "grad_norm_sq": gsq,
        "residual_term": e2S,
        "label_alignment": pe_sum - e2S,
        "batch_alignment": gsq - pe_sum,
        "per_example_grad_norm_sq": pe_sum * b,
        "train_loss": loss_sum / b,
        "train_acc": math.nan if correct is None else hits / b,
    }
    detail = {
        "gc_x": gc_x,
        "per_example_grad_sq": pe_b * b**2,
        "loss_x": loss_x,
        "logit_grad_sq": logit_sq,
        "residual": eps,
    }
    return scalars, detail


def _write_grads(params, grads, unused) -> None:
    """∇_θ L_B into ``.grad`` (overwriting), as ``zero_grad(); loss.backward()`` leaves it."""
    for param, g in zip(params, grads):
        if g.shape != param.shape or g.dtype != param.dtype:  # rules give both already
            g = g.reshape(param.shape).to(param.dtype)
        # A clone outside inference mode: the optimizer, clipping and zero_grad write into .grad.
        param.grad = g.clone()
    for param in unused:  # never reached the output: what loss.backward() leaves after zero_grad()
        param.grad = None


def per_example_grad_norms(model: nn.Module, x: Tensor, y: Tensor, *, loss: str = "cross_entropy") -> Tensor:
    """(b,) ||∇_θ L_x||², L_x the per-example loss, alone: one forward and one backward of the
    single row ε (what Opacus ghost clipping and BackPACK ``BatchL2Grad`` compute)."""
    check_loss(loss)
    with torch.inference_mode():  # as in step_terms
        p = run_pass(
            model,
            x,
            lambda out: residuals(out, y, loss)[0][None],
            need_input=False,
            need_layers=True,
            reuse_buffers=True,
        )
        total = p.out.new_zeros(x.shape[0])
        for s in p.layers:
            total += s.rule.sq_norms(s.ctx, s.delta)[0]
    return total.clone()  # a normal tensor: the caller may write into it


def step_metrics(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    loss: str = "cross_entropy",
    set_grad: bool = False,
    n_projections: int | None = None,
    generator: torch.Generator | None = None,
    gc_input: str | None = None,
) -> dict[str, float]:
    """Every per-step metric from one forward and one batched backward.

    Returns ``gc`` (mean_x ||∇_x f(x)||_F²), ``grad_norm_sq`` (||∇_θ L_B||²), ``residual_term``
    (R_B), ``label_alignment`` (A_B), ``batch_alignment`` (C_B), ``per_example_grad_norm_sq``
    (mean_x ||∇_θ L_x||²), ``train_loss``, ``train_acc`` (NaN for mse).

    ``loss``: "cross_entropy" (batch mean, y = class indices) or "mse" (½||f − y||² summed over
    outputs, batch mean; y float (b, k), or (b,) when k = 1). θ = the parameters with
    ``requires_grad``.

    ``set_grad=True`` also writes ∇_θ L_B into every trainable parameter's ``.grad``
    (overwriting, not accumulating), from the same pass. A training step with metrics is::

        row = step_metrics(model, xb, yb, loss="cross_entropy", set_grad=True)
        optimizer.step()

    which equals ``zero_grad(); loss(model(xb), yb).backward(); optimizer.step()`` plus the
    metrics. Parameters of layers that never ran get ``.grad = None``. The forward runs in the
    model's current mode (Dropout masks are those of this forward; BatchNorm must be in eval).

    ``n_projections=n``: Hutchinson mode for large k (docs/METRICS.md): 2n + 1 backward rows
    instead of k; ``gc`` and ``residual_term`` (hence ``label_alignment``) are unbiased
    estimates, ``gc_stderr`` (extra key) is the standard error of ``gc`` (NaN for n = 1); the
    gradient, ``grad_norm_sq``, ``batch_alignment`` and the per-example norms stay exact.

    ``gc_input``: for token models (integer ``x``), the name of the submodule whose output GC is
    taken w.r.t., e.g. ``gc_input="embed"`` (docs/METRICS.md, "Token models"); None: ``x``.
    """
    return _terms(model, x, y, loss, set_grad, n_projections, generator, gc_input)[0]

"""Explicit penalties of the paper's Fig. 3 / SM C.4, added to the gradient already in `.grad`.

Each penalty's gradient is accumulated by autograd on top of the loss gradient the metric
engine wrote, so the optimizer sees ∇(L_B + penalties) while `steps` logs the plain loss terms.
"""

from __future__ import annotations

import torch
from torch import nn


def weight_matrices(model: nn.Module):
    """Weights of Linear and Conv2d layers as matrices (conv kernels reshaped to out × in·kh·kw)."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            yield m.weight.reshape(m.weight.shape[0], -1)


def gc_penalty(model: nn.Module, x: torch.Tensor, n_projections: int | None, generator=None) -> torch.Tensor:
    """1/b Σ_x ||∇_x f(x)||_F², differentiable in θ: exact (k VJPs) or by random projections."""
    x = x.detach().requires_grad_(True)
    out = model(x)
    k = out.shape[1]
    if n_projections is None:
        total = sum(torch.autograd.grad(out[:, i].sum(), x, create_graph=True)[0].pow(2).sum() for i in range(k))
    else:
        total = out.new_zeros(())
        for _ in range(n_projections):
            v = torch.randn(out.shape, generator=generator, dtype=out.dtype).to(out.device)
            v = v / v.norm(dim=1, keepdim=True) * k**0.5  # uniform on the sphere of radius sqrt(k)
            total = total + torch.autograd.grad((out * v).sum(), x, create_graph=True)[0].pow(2).sum()
        total = total / n_projections
    # sum() of tensors is a tensor (typeshed types its start, 0, as int)
    return total / x.shape[0]  # pyright: ignore[reportReturnType]


def add_penalty_grads(model: nn.Module, x, y, loss_fn, cfg, generator=None) -> None:
    """Accumulate the gradients of every active penalty into `.grad` (their value is not needed, so not computed)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.l2:
        with torch.no_grad():  # analytic: ∇ λ/2||θ||² = λθ
            for p in params:
                p.grad.add_(p, alpha=cfg.l2)  # pyright: ignore[reportOptionalMemberAccess]  (the loss's backward set it)
    penalty = None
    if cfg.spectral_reg:
        sigma_sq = sum(torch.linalg.matrix_norm(w, ord=2) ** 2 for w in weight_matrices(model))
        penalty = 0.5 * cfg.spectral_reg * sigma_sq
    if cfg.flatness_reg:  # double backprop through ||∇_θ L_B||²
        grads = torch.autograd.grad(loss_fn(model(x), y), params, create_graph=True)
        flat = cfg.flatness_reg * sum(g.pow(2).sum() for g in grads)
        penalty = flat if penalty is None else penalty + flat
    if cfg.gc_reg:
        gc = cfg.gc_reg * gc_penalty(model, x, cfg.gc_reg_projections, generator)
        penalty = gc if penalty is None else penalty + gc
    if penalty is not None:
        penalty.backward()

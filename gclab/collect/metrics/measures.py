"""Other complexity measures for ranking against GC (Jiang et al. 2020)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn

from gclab.collect.losses import batch_loss


def param_norm_sq(model: nn.Module) -> float:
    """Σ ||p||² over all parameters."""
    with torch.no_grad():
        return float(sum(p.detach().double().square().sum() for p in model.parameters()))


def spectral_product(model: nn.Module) -> float:
    """Π σ_max(W) over Linear and Conv2d weights (Lipschitz upper bound for 1-Lipschitz
    activations). A conv kernel (C_out, C_in/g, kh, kw) enters as the matrix (C_out, C_in/g·kh·kw):
    a proxy, not the norm of the convolution operator. Biases and BatchNorm are ignored.
    Computed as exp Σ log σ in float64 (inf if it overflows)."""
    logs = []
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, (nn.Linear, nn.Conv2d)):
                W = mod.weight.detach().double().reshape(mod.weight.shape[0], -1)
                logs.append(math.log(max(float(torch.linalg.matrix_norm(W, ord=2)), 1e-300)))
    return math.exp(sum(logs)) if sum(logs) < 709 else math.inf


def dist_from_init(model: nn.Module, init_params) -> float:
    """||θ − θ_0||₂ over all parameters. ``init_params``: a list of tensors in
    ``model.parameters()`` order, a name → tensor mapping (``named_parameters`` names, e.g. a
    state_dict copy), or a module with the same structure."""
    named = list(model.named_parameters())
    if isinstance(init_params, nn.Module):
        init_params = dict(init_params.named_parameters())
    if isinstance(init_params, Mapping):
        missing = [n for n, _ in named if n not in init_params]
        if missing:
            raise ValueError(f"init_params lacks {missing[:3]}")
        init = [init_params[n] for n, _ in named]
    elif isinstance(init_params, Iterable):
        init = list(init_params)
    else:
        raise TypeError(f"init_params must be a list, mapping or module, got {type(init_params).__name__}")
    if len(init) != len(named):
        raise ValueError(f"init_params has {len(init)} tensors, model has {len(named)} parameters")
    total = 0.0
    with torch.no_grad():
        for (n, p), p0 in zip(named, init):
            if p.shape != p0.shape:
                raise ValueError(f"init_params['{n}'] has shape {tuple(p0.shape)}, parameter has {tuple(p.shape)}")
            total += float((p.detach().double() - p0.detach().to(p.device).double()).square().sum())
    return math.sqrt(total)


def sharpness(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    loss: str = "cross_entropy",
    iters: int = 20,
    tol: float = 1e-3,
    generator: torch.Generator | None = None,
) -> float:
    """Dominant eigenvalue of the Hessian of the batch loss w.r.t. the trainable parameters,
    by power iteration on Hessian-vector products (double backward). Returns the Rayleigh
    quotient vᵀHv of the last iterate; stops after ``iters`` HVPs or when it changes by less
    than ``tol`` (relative). It is the eigenvalue of largest |λ| (the top one near a minimum,
    where H is close to PSD); with few iterations it underestimates it."""
    params = [p for p in model.parameters() if p.requires_grad]
    with torch.enable_grad():
        L = batch_loss(model(x), y, loss)
        grads = torch.autograd.grad(L, params, create_graph=True)
        dev = generator.device if generator is not None else params[0].device
        v = [torch.randn(p.shape, generator=generator, dtype=p.dtype, device=dev).to(p.device) for p in params]
        norm = torch.sqrt(sum(t.square().sum() for t in v))
        v = [t / norm for t in v]
        lam, prev = 0.0, None  # the loop runs at least once and sets lam
        for _ in range(max(int(iters), 1)):
            Hv = torch.autograd.grad(grads, params, v, retain_graph=True)
            lam = float(sum((a * b).sum() for a, b in zip(v, Hv)))
            norm = torch.sqrt(sum(t.square().sum() for t in Hv))
            if float(norm) == 0:
                return 0.0
            v = [t.detach() / norm for t in Hv]
            if prev is not None and abs(lam - prev) <= tol * abs(lam):
                break
            prev = lam
    return lam

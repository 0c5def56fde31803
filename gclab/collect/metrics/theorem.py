"""Theorem 5.1 terms (paper §5, docs/METRICS.md) for plain dense feed-forward stacks.

For each example, ``||∇_x f||_F² ≤ ||∇_θ f||_F² / Σ_l T_l²`` with
``T_l = (1/sqrt(min(d,k))) · sqrt(1 + ||h_l||²) / (σ_max(W_l) · σ_max(∇_x h_l))``, h_l the
input of Linear l (h_1 = x). A layer without bias has no ``1 +``. The "tight" variant drops
the 1/sqrt(min(d,k)) factor (it still holds: per layer ``||∇_{W_l,b_l} f||² =
||∂f/∂z_l||_F² (1 + ||h_l||²)`` and ``||∇_x f||_F ≤ ||∂f/∂z_l||_F σ_max(W_l) σ_max(∇_x h_l)``).

All Linear layers count, frozen or not (the theorem is about the full θ).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gclab.collect.metrics import chain
from gclab.collect.metrics.capture import check_model
from gclab.collect.metrics.signals import check_out
from gclab.store.tolerances import power_tol as default_power_tol
from gclab.store.tolerances import theorem_holds

_EXACT_BUDGET = 4e8  # multiply-adds allowed for exact batched Jacobians
_EXACT_MEMORY = 3e7  # elements of the largest batched Jacobian


def theorem_supported(model: nn.Module) -> bool:
    """Theorem 5.1's terms cover plain dense feed-forward stacks (``chain.parse``): the one test."""
    return chain.parse(model) is not None


def _spec_from_rows(J: Tensor) -> Tensor:
    """σ_max per example of J given as (r, b, c) (r rows of each example's Jacobian)."""
    J = J.transpose(0, 1)  # (b, r, c)
    G = J @ J.transpose(1, 2) if J.shape[1] <= J.shape[2] else J.transpose(1, 2) @ J
    try:
        ev = torch.linalg.eigvalsh(G)
    # float32 eigh can fail on the rank-deficient Grams of ReLU nets (LinAlgError: public, unlisted in torch's stub)
    except torch.linalg.LinAlgError:  # pyright: ignore[reportPrivateImportUsage]
        ev = torch.linalg.eigvalsh(G.double())
    return ev[:, -1].clamp(min=0).sqrt().to(J.dtype)


def _power(fw: chain.Forward, l: int, b: int, d: int, iters: int, tol: float, generator) -> Tensor:
    """Batched power iteration on J_lᵀJ_l. Returns ||J_lᵀ J_l v||^(1/2) for the final unit v:
    always ≤ σ_max (a lower bound), and within ~tol relative once the iteration has settled."""
    W0 = fw.linears[0][1].weight
    dev = generator.device if generator is not None else W0.device
    v = torch.randn(1, b, d, generator=generator, dtype=W0.dtype, device=dev).to(W0.device)
    v = v / v.norm(dim=-1, keepdim=True)
    prev = None
    for _ in range(iters):
        w = fw.vjp(fw.jvp(v, l), l)
        lam = w.norm(dim=-1)  # ≥ vᵀJᵀJv, ≤ λ_max
        v = torch.where(lam[..., None] > 0, w / lam.clamp(min=torch.finfo(w.dtype).tiny)[..., None], v)
        if prev is not None and bool(((lam - prev).abs() <= tol * lam).all()):
            break
        prev = lam
    return lam[0].sqrt()


# C901 kept: exact (forward or reverse mode) or power iteration, chosen by one cost model in one place
def input_jacobian_specs(  # noqa: C901
    fw: chain.Forward, *, method: str = "auto", power_iters: int = 2000, power_tol: float | None = None, generator=None
) -> Tensor:
    """(b, L): σ_max(∇_x h_l(x)) per example and Linear layer; h_1 = x gives 1 (or max|σ'|
    if element-wise ops precede the first Linear)."""
    b, d = fw.h[0].shape
    if power_tol is None:
        power_tol = default_power_tol(str(fw.h[0].dtype))
    widths = [h.shape[1] for h in fw.h]
    L = len(widths)
    cols = [fw.first_input_spec()]
    if L == 1:
        return torch.stack(cols, 1)
    macs = sum(widths[j] * widths[j + 1] for j in range(L - 1))
    fwd_cost, fwd_mem = b * d * (macs + d * max(widths)), b * d * max(widths)
    rev_cost = sum(
        b * widths[l] * (sum(widths[j] * widths[j + 1] for j in range(l)) + widths[l] * d) for l in range(1, L)
    )
    rev_mem = b * max(widths[1:]) * max(d, max(widths))
    if method == "auto":
        # Exact whenever it costs no more than a typical power iteration run (~200 JVP+VJP pairs).
        power_cost = (
            200 * 2 * b * sum(sum(widths[j] * widths[j + 1] for j in range(l)) + widths[l] * d for l in range(1, L))
        )
        budget = max(_EXACT_BUDGET, power_cost)
        if fwd_cost <= min(rev_cost, budget) and fwd_mem <= _EXACT_MEMORY:
            method = "forward"
        elif rev_cost <= budget and rev_mem <= _EXACT_MEMORY:
            method = "reverse"
        else:
            method = "power"
    elif method == "exact":
        method = "forward" if fwd_cost <= rev_cost else "reverse"
    if method == "forward":
        # J_lᵀ as (d, b, n_l): propagate the d unit tangents once through the whole stack.
        V = torch.eye(d, dtype=fw.h[0].dtype, device=fw.h[0].device).unsqueeze(1).expand(d, b, d)
        cols += [_spec_from_rows(T) for T in fw.hidden_tangents(V)]
    elif method == "reverse":
        for l in range(1, L):
            n = widths[l]
            U = torch.eye(n, dtype=fw.h[0].dtype, device=fw.h[0].device).unsqueeze(1).expand(n, b, n)
            cols.append(_spec_from_rows(fw.vjp(U, l)))
    elif method == "power":
        for l in range(1, L):
            cols.append(_power(fw, l, b, d, power_iters, power_tol, generator))
    else:
        raise ValueError(f"unknown method {method!r}; valid: auto, exact, power")
    return torch.stack(cols, 1)


def theorem_terms(
    model: nn.Module,
    x: Tensor,
    *,
    method: str = "auto",
    power_iters: int = 2000,
    power_tol: float | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """Theorem 5.1 terms per example for a plain ``nn.Sequential`` of Linear layers and
    element-wise activations (anything else: TypeError naming the module).

    Per example (b,): ``gc_x`` = ||∇_x f||_F², ``grad_theta_sq`` = ||∇_θ f||_F²,
    ``transfer_sq_sum`` = Σ_l T_l², ``transfer_sq_sum_tight``, ``bound`` = grad_theta_sq /
    transfer_sq_sum, ``bound_tight``, ``holds`` / ``holds_tight`` (gc_x ≤ bound up to the float
    tolerance of gclab/store/tolerances.py: relative 1e-9 in float64, 1e-4 otherwise).
    Per example and layer (b, L): ``h_norm_sq`` = ||h_l||², ``weight_spec`` = σ_max(W_l) (exact),
    ``input_jac_spec`` = σ_max(∇_x h_l), ``transfer_sq``, ``transfer_sq_tight``, ``has_bias`` (bool).

    σ_max(∇_x h_l): ``method="auto"`` is exact (batched Jacobians by forward or reverse mode, then
    the top eigenvalue of the smaller Gram) when that costs no more than ~200 power iterations
    (or 4e8 multiply-adds) and fits in memory, else batched power iteration (``power_iters``,
    stop at relative change ≤ ``power_tol``, default store tolerances: 1e-10 in float64, 1e-6 otherwise). Power
    iteration returns a lower bound of σ_max, so T_l is over- and the bound UNDER-estimated: a
    reported "holds" is then still a valid certificate, but a violation smaller than the
    unconverged error could be an artifact. A T_l with zero denominator is +inf (then
    ∇_x f = 0 and the bound, 0, holds).
    """
    spec = chain.parse(model, strict=True)
    check_model(model, need_params=True)
    if not torch.is_floating_point(x):
        raise TypeError(f"x must be a floating-point tensor, got {x.dtype}")
    with torch.no_grad():
        fw = chain.forward(spec, x)
        if fw is None:
            raise TypeError("theorem_terms needs inputs of shape (b, d), or a leading nn.Flatten")
        check_out(fw.out, x.shape[0])
        deltas, gx = fw.backward(None, need_input=True)
        b, k = fw.out.shape
        d = fw.h[0].shape[1]
        bias = torch.tensor([lin.bias is not None for _, lin in fw.linears], device=x.device)
        h_norm_sq = torch.stack([h.square().sum(1) for h in fw.h], 1)
        one = bias.to(h_norm_sq.dtype)
        dsq = torch.stack([dl.square().sum((0, 2)) for dl in deltas], 1)  # ||∂f/∂z_l||_F²
        grad_theta_sq = (dsq * (h_norm_sq + one)).sum(1)
        wspec = torch.stack([torch.linalg.matrix_norm(lin.weight.detach(), ord=2) for _, lin in fw.linears])
        weight_spec = wspec.to(h_norm_sq.dtype).expand(b, -1).contiguous()
        jspec = input_jacobian_specs(
            fw, method=method, power_iters=power_iters, power_tol=power_tol, generator=generator
        )
        num, den = h_norm_sq + one, (weight_spec * jspec).square()
        inf = torch.full_like(num, float("inf"))
        t_tight = torch.where(den > 0, num / den.clamp(min=torch.finfo(den.dtype).tiny), inf)
        t_paper = t_tight / min(d, k)
        gc_x = gx.square().sum((0, 2))  # pyright: ignore[reportOptionalMemberAccess]  (need_input: gx set)
        s, s_tight = t_paper.sum(1), t_tight.sum(1)
        bound, bound_tight = grad_theta_sq / s, grad_theta_sq / s_tight
        return {
            "gc_x": gc_x,
            "grad_theta_sq": grad_theta_sq,
            "transfer_sq_sum": s,
            "transfer_sq_sum_tight": s_tight,
            "bound": bound,
            "bound_tight": bound_tight,
            "holds": theorem_holds(gc_x, bound, str(gc_x.dtype)),
            "holds_tight": theorem_holds(gc_x, bound_tight, str(gc_x.dtype)),
            "h_norm_sq": h_norm_sq,
            "weight_spec": weight_spec,
            "input_jac_spec": jspec,
            "transfer_sq": t_paper,
            "transfer_sq_tight": t_tight,
            "has_bias": bias.expand(b, -1),
        }

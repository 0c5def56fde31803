"""Batch functional dimension (seed 001): rank of the (b·k) × P Jacobian of the outputs on a
batch w.r.t. all trainable parameters, from the empirical-NTK Gram K = J Jᵀ.

K is summed from per-layer blocks built from the one pass's signals (``Rule.gram``): for a
dense layer ``K[(i,x),(j,x')] = <δ^i(x), δ^j(x')> (<h(x), h(x')> + 1)``; conv and BatchNorm
layers use their (small) per-layer per-example gradient blocks. J itself is never formed.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import Tensor, nn

from collect.metrics.capture import check_model, run_pass

OUTPUTS = ("logits", "softmax")


def ntk_gram(model: nn.Module, x: Tensor, *, outputs: str = "logits") -> tuple[Tensor, int]:
    """(K of shape (k·b, k·b) ordered (output, example), P = number of trainable parameters),
    computed in the model's dtype."""
    if outputs == "logits":
        cot = None
    elif outputs == "softmax":
        def cot(out: Tensor) -> Tensor:
            # Row i is ∂ softmax_i / ∂f = s_i (e_i − s): the softmax Jacobian chained into the cotangents.
            s = torch.softmax(out, 1)
            eye = torch.eye(out.shape[1], dtype=out.dtype, device=out.device)
            return s.T.unsqueeze(-1) * (eye.unsqueeze(1) - s.unsqueeze(0))
    else:
        raise ValueError(f"unknown outputs {outputs!r}; valid: {', '.join(OUTPUTS)}")
    p = run_pass(model, x, cot, need_input=False, need_layers=True)
    b, k = p.out.shape
    K = p.out.new_zeros(k * b, k * b)
    with torch.no_grad():
        for s in p.layers:
            K += s.rule.gram(s.ctx, s.delta)
    n_params = sum(s.rule.n_params() for s in p.layers) + sum(q.numel() for q in p.unused)
    return K, n_params


def functional_dimension(model: nn.Module, x: Tensor, *, outputs: str = "logits",
                         return_spectrum: bool = False):
    """Rank of the (b·k) × P parameter Jacobian of the ``outputs`` ("logits" or "softmax") on
    the batch ``x``; with ``return_spectrum=True`` returns ``(rank, singular values)`` (descending
    numpy float64 array of length b·k).

    Computed in float64 (a float64 copy of the model if needed) from the Gram K = J Jᵀ: the
    singular values of J are the square roots of K's eigenvalues (negatives clamped to 0).
    Tolerance: numpy's default for J, ``σ_max · max(b·k, P) · eps``, raised to the Gram's own
    resolution ``σ_max · sqrt(b·k · eps)`` (~1e-7·σ_max). Why: the Gram squares the condition
    number, so the eigenvalues of an exactly rank-deficient K come out at ±eps·||K|| and their
    square roots at ~1e-8·σ_max — far above numpy's tolerance; counted as rank they would
    overstate it. Singular values below ~1e-7·σ_max are therefore not resolved (numpy on the
    materialized J would count those between its tolerance and this one); exact deficiencies
    (dead units, duplicated neurons, P < b·k) are.
    """
    if outputs not in OUTPUTS:
        raise ValueError(f"unknown outputs {outputs!r}; valid: {', '.join(OUTPUTS)}")
    check_model(model)  # before copying: clear errors, and some unsupported modules cannot be copied
    if not all(t.dtype == torch.float64 for t in list(model.parameters()) + list(model.buffers())
               if torch.is_floating_point(t)):
        model = copy.deepcopy(model).double()
    K, n_params = ntk_gram(model, x.to(torch.float64), outputs=outputs)
    ev = torch.linalg.eigvalsh(K)
    sv = ev.clamp(min=0).sqrt().flip(0).cpu().numpy()
    m = K.shape[0]
    eps = np.finfo(np.float64).eps
    smax = float(sv[0]) if sv.size else 0.0
    tol = smax * max(max(m, n_params) * eps, np.sqrt(m * eps))
    rank = int((sv > tol).sum())
    return (rank, sv) if return_spectrum else rank


def spectrum_summary(sv: np.ndarray) -> dict[str, float]:
    """Log-friendly summary of a singular-value spectrum."""
    sv = np.asarray(sv, dtype=np.float64)
    if sv.size == 0 or sv[0] == 0:
        return {"sv_max": 0.0, "sv_median_rel": 0.0, "effective_rank": 0.0}
    p = sv**2 / np.sum(sv**2)
    p = p[p > 0]
    return {"sv_max": float(sv[0]), "sv_median_rel": float(np.median(sv) / sv[0]),
            "effective_rank": float(np.exp(-np.sum(p * np.log(p))))}

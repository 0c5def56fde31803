"""Batch functional dimension (docs/METRICS.md, "Batch functional dimension"): rank of the
(b·k) × P Jacobian of the outputs on a batch w.r.t. all trainable parameters.

Two exact routes from the one pass's signals, chosen by the Jacobian's size:

- ``jacobian`` (J has ≤ ``MAX_JACOBIAN_ENTRIES`` entries; the BFD paper's sizes): J is
  materialized in float64 from the per-layer per-example gradients (``Rule.per_example``) and
  its singular values come from an SVD of J itself — numpy.linalg.matrix_rank's rule exactly,
  at any σ_max. The SVD costs O(b·k·P·min(b·k, P)), the order of building the Gram.
- ``gram`` (larger J): the empirical-NTK Gram K = J Jᵀ summed from per-layer blocks
  (``Rule.gram``; for dense layers ``<δ^i(x), δ^j(x')> (<h(x), h(x')> + 1)``), J never formed.
  The Gram squares the condition number: singular values below ~1e-7·σ_max are not resolved,
  so ranks are undercounted once training stretches the spectrum past that.

The ceiling ``bfd_ceiling`` counts the symmetries that hold for every input: the positive
rescaling of each hidden ReLU unit, and for softmax outputs the common shift of the last
layer's rows (softmax(f + c) = softmax(f)) and rank ≤ k − 1 per example.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from gclab.collect.metrics.capture import check_model, run_pass

OUTPUTS = ("logits", "softmax")
METHODS = ("auto", "jacobian", "gram")
# Positively homogeneous activations: each hidden unit followed by one has a rescaling symmetry.
_HOMOGENEOUS = (nn.ReLU, nn.LeakyReLU)
_UNITS = (nn.Linear, nn.Conv1d, nn.Conv2d)
# Above this many float64 entries (128 MiB) J is not materialized and the Gram route is used.
MAX_JACOBIAN_ENTRIES = 2**24


@dataclass(frozen=True)
class Rank:
    rank: int
    sv: np.ndarray  # singular values of J, descending float64 (length min(b·k, P) or b·k)
    tol: float  # threshold applied to sv
    n_params: int
    method: str

    @property
    def sv_last_kept(self) -> float:
        return float(self.sv[self.rank - 1]) if self.rank else 0.0

    @property
    def sv_first_dropped(self) -> float:
        return float(self.sv[self.rank]) if self.rank < self.sv.size else 0.0


def _cotangents(outputs: str):
    if outputs == "logits":
        return None
    if outputs == "softmax":

        def cot(out: Tensor) -> Tensor:
            # Row i is ∂ softmax_i / ∂f = s_i (e_i − s): the softmax Jacobian chained into the cotangents.
            s = torch.softmax(out, 1)
            eye = torch.eye(out.shape[1], dtype=out.dtype, device=out.device)
            return s.T.unsqueeze(-1) * (eye.unsqueeze(1) - s.unsqueeze(0))

        return cot
    raise ValueError(f"unknown outputs {outputs!r}; valid: {', '.join(OUTPUTS)}")


def _count_params(p) -> int:
    return sum(s.rule.n_params() for s in p.layers) + sum(q.numel() for q in p.unused)


def ntk_gram(model: nn.Module, x: Tensor, *, outputs: str = "logits") -> tuple[Tensor, int]:
    """(K of shape (k·b, k·b) ordered (output, example), P = number of trainable parameters),
    computed in the model's dtype."""
    p = run_pass(model, x, _cotangents(outputs), need_input=False, need_layers=True)
    b, k = p.out.shape
    K = p.out.new_zeros(k * b, k * b)
    with torch.no_grad():
        for s in p.layers:
            K += s.rule.gram(s.ctx, s.delta)
    return K, _count_params(p)


def param_jacobian(model: nn.Module, x: Tensor, *, outputs: str = "logits") -> Tensor:
    """J of shape (k·b, P_used), rows ordered (output, example), columns layer by layer; the
    columns of parameters that did not run (all zero) are left out."""
    p = run_pass(model, x, _cotangents(outputs), need_input=False, need_layers=True)
    with torch.no_grad():
        blocks = [s.rule.per_example(s.ctx, s.delta).flatten(0, 1) for s in p.layers]
    return torch.cat(blocks, 1) if blocks else p.out.new_zeros(p.out.numel(), 0)


def _float64(model: nn.Module) -> nn.Module:
    if all(
        t.dtype == torch.float64 for t in list(model.parameters()) + list(model.buffers()) if torch.is_floating_point(t)
    ):
        return model
    return copy.deepcopy(model).double()


def rank_of(model: nn.Module, x: Tensor, *, outputs: str = "logits", method: str = "auto") -> Rank:
    """The batch functional dimension of ``model`` on ``x`` with its spectrum (see the module doc).

    ``jacobian``: numpy's rule on J, tolerance ``σ_max · max(b·k, P) · eps``.
    ``gram``: the same tolerance raised to the Gram's resolution ``σ_max · sqrt(b·k · eps)``,
    because the eigenvalues of an exactly rank-deficient K come out at ±eps·||K||, whose square
    roots (~1e-8·σ_max) would otherwise count as rank.
    ``auto``: ``jacobian`` when b·k·P ≤ ``MAX_JACOBIAN_ENTRIES``, else ``gram``.
    """
    if outputs not in OUTPUTS:
        raise ValueError(f"unknown outputs {outputs!r}; valid: {', '.join(OUTPUTS)}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    check_model(model)  # before copying: clear errors, and some unsupported modules cannot be copied
    model, x = _float64(model), x.to(torch.float64)
    eps = np.finfo(np.float64).eps
    m = len(x) * _n_outputs(model, x)
    n_params = sum(q.numel() for q in model.parameters() if q.requires_grad)
    if method == "jacobian" or (method == "auto" and m * n_params <= MAX_JACOBIAN_ENTRIES):
        sv = torch.linalg.svdvals(param_jacobian(model, x, outputs=outputs)).cpu().numpy()
        smax = float(sv[0]) if sv.size else 0.0
        tol = smax * max(m, n_params) * eps
        return Rank(int((sv > tol).sum()), sv, tol, n_params, "jacobian")
    K, n_params = ntk_gram(model, x, outputs=outputs)
    sv = torch.linalg.eigvalsh(K).clamp(min=0).sqrt().flip(0).cpu().numpy()
    smax = float(sv[0]) if sv.size else 0.0
    tol = smax * max(max(m, n_params) * eps, np.sqrt(m * eps))
    return Rank(int((sv > tol).sum()), sv, tol, n_params, "gram")


def _n_outputs(model: nn.Module, x: Tensor) -> int:
    with torch.no_grad():
        return model(x[:1]).shape[1]


def functional_dimension(
    model: nn.Module, x: Tensor, *, outputs: str = "logits", return_spectrum: bool = False, method: str = "auto"
):
    """Rank of the (b·k) × P parameter Jacobian of the ``outputs`` ("logits" or "softmax") on
    the batch ``x`` (``rank_of``); with ``return_spectrum=True`` returns ``(rank, singular
    values)`` (descending numpy float64). Always computed in float64 (a float64 copy of the
    model if needed; the caller's model is untouched)."""
    r = rank_of(model, x, outputs=outputs, method=method)
    return (r.rank, r.sv) if return_spectrum else r.rank


def rescaling_units(model: nn.Module) -> int:
    """Hidden units with a positive-rescaling symmetry: outputs of a Linear/Conv layer fed
    straight into a ReLU (in ``model.modules()`` order, as the MLP and CNN are built)."""
    mods = [m for m in model.modules() if not list(m.children())]
    return sum(_width(a) for a, nxt in zip(mods, mods[1:]) if isinstance(a, _UNITS) and isinstance(nxt, _HOMOGENEOUS))


def _width(layer: nn.Module) -> int:
    # nn.Module.__getattr__ types out_channels `Tensor | Module` for the checker; it is a Conv2d's int
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels  # pyright: ignore[reportReturnType]


def bfd_ceiling(model: nn.Module, b: int, k: int, *, outputs: str = "logits") -> int:
    """The largest BFD any batch of ``b`` inputs can give (docs/EXPERIMENTS.md, bfd):
    logits ``min(b·k, P − H)``; softmax ``min(b·(k−1), P − H − (n_{L−1} + 1))`` — softmax is
    invariant to adding one vector to every row of the last Linear layer (and one constant to
    every bias), and each example's softmax Jacobian has rank ≤ k − 1. H = ``rescaling_units``."""
    n_params = sum(q.numel() for q in model.parameters() if q.requires_grad)
    free = n_params - rescaling_units(model)
    if outputs == "logits":
        return min(b * k, free)
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    shift = (last.in_features if last.weight.requires_grad else 0) + (
        1 if last.bias is not None and last.bias.requires_grad else 0
    )
    return min(b * (k - 1), free - shift)

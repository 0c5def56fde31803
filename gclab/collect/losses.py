"""The losses a run can train with, defined once (docs/METRICS.md, "Losses and residuals"):
their names, the per-example loss L_x, the residual ε = ∂L_x/∂f the metric engine mixes its
rows with, the batch loss autograd differentiates, and accuracy.

- ``cross_entropy``: y are class indices; L_x = −log softmax(f)_y, ε = softmax(f) − onehot(y).
- ``mse``: y are float targets (b, k), or (b,) when k = 1; L_x = ½‖f − y‖², ε = f − y.

Every batch quantity is the mean over the batch of its per-example form.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

LOSSES = ("cross_entropy", "mse")
# Class-index dtypes cross_entropy accepts.
_INDEX_DTYPES = (torch.int64, torch.int32, torch.int16, torch.uint8)


def check_loss(loss: str) -> None:
    """One-line ValueError for a loss name the engine does not know."""
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; valid: {', '.join(LOSSES)}")


def targets(out: Tensor, y: Tensor, loss: str) -> Tensor:
    """``y`` checked against the outputs ``out`` (b, k) and brought to the form the loss takes:
    int64 indices (b,) for cross_entropy, ``out``'s dtype (b, k) for mse."""
    b, k = out.shape
    if loss == "cross_entropy":
        if y.dtype not in _INDEX_DTYPES or y.shape != (b,):
            raise TypeError(
                f"cross_entropy needs integer class indices of shape ({b},), got {y.dtype} {tuple(y.shape)}"
            )
        return y.long()
    check_loss(loss)
    if not torch.is_floating_point(y):
        raise TypeError(f"mse needs float targets, got {y.dtype}")
    if y.shape == (b,) and k == 1:
        y = y[:, None]
    if y.shape != (b, k):
        raise ValueError(f"mse targets must have shape ({b}, {k}) (or ({b},) when k=1), got {tuple(y.shape)}")
    return y.to(out.dtype)


def residuals(out: Tensor, y: Tensor, loss: str) -> tuple[Tensor, Tensor, Tensor | None]:
    """(ε (b, k), per-example loss L_x (b,), per-example correct (b,) or None for mse), from one
    softmax for cross_entropy. Not differentiable: the engine's backward takes ε as cotangent rows."""
    y = targets(out, y, loss)
    if loss == "cross_entropy":
        logp = F.log_softmax(out, 1)
        eps = logp.exp().scatter_add_(1, y[:, None], out.new_full((out.shape[0], 1), -1.0))
        return eps, F.nll_loss(logp, y, reduction="none"), correct(out, y, loss)
    eps = out - y
    return eps, 0.5 * eps.square().sum(1), None


def batch_loss(out: Tensor, y: Tensor, loss: str) -> Tensor:
    """The batch mean of L_x, differentiable (what ``loss.backward()`` differentiates)."""
    y = targets(out, y, loss)
    if loss == "cross_entropy":
        return F.cross_entropy(out, y)
    return 0.5 * (out - y).square().sum(1).mean()


def correct(out: Tensor, y: Tensor, loss: str) -> Tensor | None:
    """(b,) bool: the top logit is the label; None for mse (a regression has no accuracy)."""
    return out.argmax(1) == y if loss == "cross_entropy" else None


def accuracy(out: Tensor, y: Tensor, loss: str) -> float:
    """Fraction of correct examples (1 − training error); NaN for mse."""
    hits = correct(out, y, loss)
    return float("nan") if hits is None else float(hits.double().mean())

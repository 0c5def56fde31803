"""The two losses of gclab: batch-mean cross-entropy, and ½||f − y||² summed over outputs, batch-mean."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def batch_loss(out: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    if loss == "cross_entropy":
        return F.cross_entropy(out, y)
    return 0.5 * (out - y.reshape(out.shape)).pow(2).sum(1).mean()

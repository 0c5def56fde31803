"""The Embedding rule (docs/METRICS.md, "Per-layer rules"): z_t = W[i_t] for the token ids i_t of an
example, so its gradient is Σ_t e_{i_t} δ_tᵀ (row i_t of W gets δ_t; positions holding
``padding_idx`` get none, as in torch). Its squared norm has the ghost form
Σ_{t,s} [i_t = i_s] ⟨δ_t, δ_s⟩ (T²·d per row and example, no (V, d) gradient formed); the batch
gradient is one ``index_add``. ``max_norm`` (which rewrites W in the forward), ``scale_grad_by_freq``
(a batch-dependent scale) and ``sparse`` go to the fallback.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gclab.collect.metrics.rules import Rule


@dataclass(frozen=True)
class EmbeddingContext:
    """ids (b, T) of each example's positions, ``keep`` (b, T, 1) 0 at ``padding_idx``, and
    ``same`` (b, T, T): 1 where two positions hold the same kept id."""

    ids: Tensor
    keep: Tensor
    same: Tensor


class EmbeddingRule(Rule):
    """``h``: the token ids (b, *S); ``delta``: (m, b, *S, d)."""

    param_names = ("weight",)

    def __init__(self, module: nn.Module):
        super().__init__(module)
        assert isinstance(module, nn.Embedding)  # registered for nn.Embedding only
        self.embedding = module

    @classmethod
    def supports(cls, module: nn.Module) -> bool:
        assert isinstance(module, nn.Embedding)  # registered for nn.Embedding only
        return module.max_norm is None and not module.scale_grad_by_freq and not module.sparse

    def prepare(self, h: Tensor) -> EmbeddingContext:
        ids = h.reshape(h.shape[0], -1)
        pad = self.embedding.padding_idx
        keep = torch.ones_like(ids, dtype=torch.bool) if pad is None else ids != pad
        same = (ids[:, :, None] == ids[:, None, :]) & keep[:, :, None] & keep[:, None, :]
        dtype = self.embedding.weight.dtype
        return EmbeddingContext(ids, keep[..., None].to(dtype), same.to(dtype))

    def _rows(self, ctx, delta: Tensor) -> Tensor:
        """delta as (m, b, T, d) with the padding positions zeroed."""
        m, b = delta.shape[:2]
        return delta.reshape(m, b, ctx.ids.shape[1], -1) * ctx.keep

    def sq_norms(self, ctx, delta):
        if "weight" not in self.trainable:
            return delta.new_zeros(delta.shape[:2])
        D = self._rows(ctx, delta)
        return (torch.matmul(D, D.transpose(-1, -2)) * ctx.same).sum((-1, -2))

    def grads(self, ctx, delta):
        if "weight" not in self.trainable:
            return {}
        D = self._rows(ctx, delta[None])[0]
        W = self.embedding.weight
        return {"weight": W.new_zeros(W.shape).index_add_(0, ctx.ids.reshape(-1), D.reshape(-1, D.shape[-1]))}

    def per_example(self, ctx, delta):
        m, b = delta.shape[:2]
        if "weight" not in self.trainable:
            return delta.new_zeros(m, b, 0)
        D = self._rows(ctx, delta).reshape(m * b, ctx.ids.shape[1], -1)
        V, d = self.embedding.weight.shape
        idx = ctx.ids.repeat(m, 1)[:, :, None].expand(-1, -1, d)
        J = D.new_zeros(m * b, V, d).scatter_add_(1, idx, D)
        return J.reshape(m, b, V * d)

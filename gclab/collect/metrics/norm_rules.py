"""Rules for normalization layers with a per-feature affine map (docs/METRICS.md, "Per-layer
rules"): eval BatchNorm, LayerNorm, GroupNorm, InstanceNorm. Each is z = x̂ ⊙ γ + β with x̂ made
from the example's own values (or running statistics), so its per-example gradient is 2·F
per-feature sums, formed directly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from gclab.collect.metrics.rules import BatchNormContext, Rule, mixed_from_per_example, split_flat, sq
from gclab.collect.metrics.workspace import workspace


class AffineNormRule(Rule):
    """A normalization with a per-feature affine map z = x̂ ⊙ γ + β, where x̂ uses only the
    example's own values (eval BatchNorm: running stats; GroupNorm, InstanceNorm, LayerNorm: the
    example's statistics): ∂/∂γ = Σ_positions δ ⊙ x̂, ∂/∂β = Σ_positions δ, formed per example
    (2·F numbers, F = the affine features). ``normalize(h)`` gives x̂; ``_features`` puts the
    affine features last: (…, positions, F)."""

    def normalize(self, h: Tensor) -> Tensor:
        raise NotImplementedError

    def _features(self, t: Tensor, lead: int) -> Tensor:
        """(lead dims, positions, F) view/copy of t whose first ``lead`` dims are (m, b) or (b,)."""
        C = t.shape[lead]
        return t.reshape(*t.shape[:lead], C, -1).transpose(-1, -2)  # channels at dim 1 of an example

    def prepare(self, h: Tensor) -> BatchNormContext:
        return BatchNormContext(self.normalize(h))

    def per_example(self, ctx, delta):
        m, b = delta.shape[:2]
        d = self._features(delta, 2)
        parts = []
        if "weight" in self.trainable:
            parts.append(torch.einsum("mbtf,btf->mbf", d, self._features(ctx.xhat, 1)))
        if "bias" in self.trainable:
            parts.append(d.sum(-2))
        return torch.cat(parts, -1) if parts else delta.new_zeros(m, b, 0)

    def sq_norms(self, ctx, delta):
        return sq(self.per_example(ctx, delta), -1)

    def row_terms(self, ctx, delta, w, factors=None):
        S, pe, total = mixed_from_per_example(self.per_example(ctx, delta), w)
        return S, pe, split_flat(total, self.trainable)

    def grads(self, ctx, delta):
        return split_flat(self.per_example(ctx, delta[None])[0].sum(0), self.trainable)


class LayerNormRule(AffineNormRule):
    """LayerNorm over the last dims (normalized_shape); affine features = those dims."""

    def normalize(self, h):
        ln = self.module
        return F.layer_norm(h, ln.normalized_shape, None, None, ln.eps)

    def _features(self, t, lead):
        n = len(self.module.normalized_shape)
        F_ = math.prod(t.shape[t.dim() - n :])
        return t.reshape(*t.shape[:lead], -1, F_)


class GroupNormRule(AffineNormRule):
    def normalize(self, h):
        gn = self.module
        return F.group_norm(h, gn.num_groups, None, None, gn.eps)


class InstanceNormRule(AffineNormRule):
    def normalize(self, h):
        n = self.module
        use_input_stats = n.training or not n.track_running_stats
        # momentum 0: a train-mode call would otherwise update the running stats a second time.
        return F.instance_norm(h, n.running_mean, n.running_var, None, None, use_input_stats, 0.0, n.eps)


class BatchNormEvalRule(Rule):
    """Eval-mode BatchNorm is a per-channel affine map of x̂ = (h − running_mean)/sqrt(running_var + eps):
    ∂/∂γ_c = Σ_positions δ_c x̂_c, ∂/∂β_c = Σ_positions δ_c. Its γ, β are ordinary parameters
    of θ here (counted in every norm, Gram and batch gradient). Train mode is refused upstream."""

    def prepare(self, h: Tensor) -> BatchNormContext:
        bn = self.module
        shape = (1, -1) + (1,) * (h.dim() - 2)
        # running_mean/var are buffers (Tensor), typed `Tensor | Module` by Module.__getattr__.
        mean, var = bn.running_mean, bn.running_var
        assert isinstance(mean, Tensor) and isinstance(var, Tensor)
        return BatchNormContext((h - mean.view(shape)) * torch.rsqrt(var.view(shape) + bn.eps))

    def per_example(self, ctx, delta):
        m, b, C = delta.shape[:3]
        d = delta.reshape(m, b, C, -1)
        parts = []
        if "weight" in self.trainable:
            # δ ⊙ x̂ into a reused buffer: a fresh δ-sized temporary costs more in page faults than the product.
            tmp = workspace().get(("bn", d.shape), d.shape, d)
            parts.append(torch.mul(d, ctx.xhat.reshape(b, C, -1), out=tmp).sum(-1))
        if "bias" in self.trainable:
            parts.append(d.sum(-1))
        return torch.cat(parts, -1) if parts else delta.new_zeros(m, b, 0)

    def sq_norms(self, ctx, delta):
        return self.per_example(ctx, delta).square().sum(-1)

    def row_terms(self, ctx, delta, w, factors=None):
        S, pe, total = mixed_from_per_example(self.per_example(ctx, delta), w)
        return S, pe, split_flat(total, self.trainable)

    def grads(self, ctx, delta):
        C = delta.shape[1]
        out = {}
        if "weight" in self.trainable:
            out["weight"] = (delta * ctx.xhat).transpose(0, 1).reshape(C, -1).sum(1)
        if "bias" in self.trainable:
            out["bias"] = delta.transpose(0, 1).reshape(C, -1).sum(1)
        return out

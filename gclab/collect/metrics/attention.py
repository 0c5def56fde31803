"""The ``nn.MultiheadAttention`` rule (docs/METRICS.md, "Per-layer rules"): self-attention with
packed q, k, v projections.

Its packed projection is a Linear layer over the T positions: qkv_t = W_in x_t + b_in, so an
example's gradient is ∂/∂W_in = Σ_t δ_t x_tᵀ, ∂/∂b_in = Σ_t δ_t with δ_t the cotangent of qkv_t
(the sequence form of ``LinearRule``: direct or ghost by FLOP count). The pass gets δ by ``replay``:
the autograd path recomputes the layer with a zero probe added to qkv, and calls ``out_proj`` as a
module, so that child Linear takes its own rule. Other uses (cross-attention, masks, separate
q/k/v weights, bias_k / bias_v, train-mode attention dropout) return None and the plan sends the
layer to the generic fallback.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gclab.collect.metrics.rules import Rule, seq_per_example, seq_sq_norms

W, B = "in_proj_weight", "in_proj_bias"
# Parameters MultiheadAttention registers (None unless kdim/vdim differ or add_bias_kv): replay refuses them.
UNSUPPORTED = ("q_proj_weight", "k_proj_weight", "v_proj_weight", "bias_k", "bias_v")
# forward's arguments after query, in order
ARGS = ("key", "value", "key_padding_mask", "need_weights", "attn_mask", "average_attn_weights", "is_causal")


@dataclass(frozen=True)
class AttentionContext:
    """The packed projection's input as positions, A (b, g=1, p=d, T)."""

    A: Tensor


class MultiheadAttentionRule(Rule):
    """``h`` is the replay's input x (b, T, d); ``delta`` the cotangents of qkv (m, b, T, 3d)."""

    param_names = (W, B, *UNSUPPORTED)
    replays = True

    def __init__(self, module: nn.Module):
        super().__init__(module)
        assert isinstance(module, nn.MultiheadAttention)  # registered for nn.MultiheadAttention only
        self.mha = module
        self._as_linear = {n: True for n, key in (("weight", W), ("bias", B)) if key in self.trainable}

    def replay(self, inp: tuple, out, kwargs: dict | None = None) -> tuple[object, Tensor, Tensor] | None:
        """(the output recomputed differentiably, the zero probe on qkv (b, T, 3d), x (b, T, d)), or None."""
        mha, kw = self.mha, dict(zip(ARGS, inp[1:]))
        kw.update(kwargs or {})
        query = inp[0] if inp else kw.get("query")
        if not isinstance(query, Tensor) or query.dim() != 3 or not self._plain(kw, query):
            return None
        x = query if mha.batch_first else query.transpose(0, 1)  # (b, T, d)
        b, T, d = x.shape
        heads = mha.num_heads
        probe = x.new_zeros(b, T, 3 * d, requires_grad=True)
        qkv = x @ mha.in_proj_weight.T + probe
        if mha.in_proj_bias is not None:
            qkv = qkv + mha.in_proj_bias
        q, k, v = (t.reshape(b, T, heads, d // heads).transpose(1, 2) for t in qkv.chunk(3, -1))
        att = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, T, d)
        y = mha.out_proj(att)
        y = y if mha.batch_first else y.transpose(0, 1)
        weights = None
        if kw.get("need_weights", True):
            weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // heads), -1)
            weights = weights.mean(1) if kw.get("average_attn_weights", True) else weights
        return (y, weights), probe, x.detach()

    def _plain(self, kw: dict, query: Tensor) -> bool:
        """True if the call is self-attention the replay reproduces exactly (see the module docstring)."""
        mha = self.mha
        same = kw.get("key", query) is query and kw.get("value", query) is query
        defaults = kw.get("key_padding_mask") is None and kw.get("attn_mask") is None and not kw.get("is_causal")
        extra = any(getattr(mha, n, None) is not None for n in UNSUPPORTED) or mha.add_zero_attn
        dropout = mha.training and mha.dropout > 0
        return same and defaults and not extra and not dropout and mha.in_proj_weight is not None

    def prepare(self, h: Tensor) -> AttentionContext:
        return AttentionContext(h.transpose(1, 2).unsqueeze(1))

    def _qkv(self, delta: Tensor) -> Tensor:
        return delta.transpose(2, 3).unsqueeze(2)  # (m, b, g=1, 3d, T)

    def sq_norms(self, ctx, delta):
        return seq_sq_norms(ctx.A, self._qkv(delta), self._as_linear)

    def grads(self, ctx, delta):
        out = {}
        if W in self.trainable:
            out[W] = torch.einsum("btq,bpt->qp", delta, ctx.A[:, 0])
        if B in self.trainable:
            out[B] = delta.sum((0, 1))
        return out

    def per_example(self, ctx, delta):
        m, b = delta.shape[:2]
        parts = seq_per_example(ctx.A, self._qkv(delta), self._as_linear)  # weight (q, p order), bias
        return torch.cat([p.reshape(m, b, -1) for p in parts], -1) if parts else delta.new_zeros(m, b, 0)

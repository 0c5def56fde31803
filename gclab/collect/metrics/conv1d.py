"""Conv1d as the Conv2d rule on a height-1 image (docs/METRICS.md, "Per-layer rules"): a Conv1d of
kernel k, stride s, padding p, dilation d on (b, C, L) is the Conv2d of kernel (1, k), stride (1, s),
padding (0, p), dilation (1, d) on (b, C, 1, L), so every per-example product, the ghost / direct
choice and the aten weight gradient are the Conv2d rule's, on free views.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from gclab.collect.metrics.rules import Conv2dRule, ConvContext


@dataclass(frozen=True)
class _AsConv2d:
    """The attributes ``Conv2dRule`` reads from its module, for a Conv1d seen as height-1 Conv2d."""

    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int] | str
    dilation: tuple[int, int]
    groups: int
    padding_mode: str
    weight: Tensor


class Conv1dRule(Conv2dRule):
    """Conv1d: h (b, C_in, L), delta (m, b, C_out, L_out); gradients in the Conv1d parameter shapes."""

    takes_out_scale = False  # Conv1d is never on the tape, the only path that folds a BatchNorm

    def __init__(self, module: nn.Module):
        super().__init__(module)
        assert isinstance(module, nn.Conv1d)  # registered for Conv1d only
        self.conv1d = module
        pad = module.padding if isinstance(module.padding, str) else (0, module.padding[0])
        view = _AsConv2d(
            (1, module.kernel_size[0]),
            (1, module.stride[0]),
            pad,
            (1, module.dilation[0]),
            module.groups,
            module.padding_mode,
            module.weight.unsqueeze(2),
        )
        self.module = view  # pyright: ignore[reportAttributeAccessIssue]  # Conv2dRule reads only these attributes

    def prepare(self, h: Tensor, out_scale: Tensor | None = None) -> ConvContext:
        return super().prepare(h.unsqueeze(2), out_scale)

    def grads(self, ctx, delta):
        out = super().grads(ctx, delta.unsqueeze(2))
        return {n: g.reshape(self.trainable[n].shape) for n, g in out.items()}

    def row_terms(self, ctx, delta, w, factors=None):
        S, pe, grads = super().row_terms(ctx, delta, w, factors)
        return S, pe, {n: g.reshape(self.trainable[n].shape) for n, g in grads.items()}

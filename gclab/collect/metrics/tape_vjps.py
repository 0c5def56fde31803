"""The tape's backwards (``tape.py``): one registered function per op kind (``VJPS``), each taking
the op and its output cotangent with the ``m`` rows folded into the batch, ``g`` (b·m, *out), and
returning its input's cotangent (b·m, *in) with plain kernel calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from gclab.collect.metrics.activations import grad_from_call
from gclab.collect.metrics.tape_record import BN, CONV, LINEAR, Op, as_pair


def _expand_like(t: Tensor, m: int) -> Tensor:
    """A zero-stride stand-in of shape (b·m, ...) for kernels that only read the input's shape."""
    return t.new_empty(()).expand(m * t.shape[0], *t.shape[1:])


def example_rows(g: Tensor, m: int, like: Tensor) -> Tensor:
    """(b·m, *out) -> (b, m, *out): rows are folded example-major (see ``backward``)."""
    return g.reshape(like.shape[0], m, *like.shape[1:])


def bn_scale(a: dict) -> Tensor:
    """Eval BatchNorm's per-channel factor γ/sqrt(running_var + eps): its Jacobian is this diagonal."""
    scale = torch.rsqrt(a["running_var"] + a["eps"])
    return scale if a["weight"] is None else scale * a["weight"]


def vjp(op: Op, g: Tensor, m: int, inplace: bool = False, buf=None, out_scale: Tensor | None = None) -> Tensor:
    """Cotangent of the op's tracked input for the cotangent ``g`` (b·m, *out) of its output;
    ``inplace``: g is ours alone, element-wise backwards may overwrite it (no fresh allocation);
    ``buf(shape)``: where to put a result built from zeros (a reused workspace buffer);
    ``out_scale`` (conv only): the true cotangent is g times this per-channel factor (a folded BatchNorm).
    One registered backward per op kind (``VJPS``)."""
    return VJPS[op.kind](Backward(op, g, m, inplace, buf or (lambda shape: g.new_zeros(shape)), out_scale))


@dataclass
class Backward:
    """One op's backward call: the op, its output cotangent g (b·m, *out), the m rows, whether g
    may be overwritten, a zeroed-buffer factory ``zeros(shape)`` and a folded BN factor (conv only)."""

    op: Op
    g: Tensor
    m: int
    inplace: bool
    zeros: Any
    out_scale: Tensor | None


def _vjp_conv(c: Backward) -> Tensor:
    a, inp, g = c.op.a, c.op.a["input"], c.g
    weight = a["weight"] if c.out_scale is None else a["weight"] * c.out_scale.view(-1, 1, 1, 1)
    st, pad, dil = (as_pair(a[n]) for n in ("stride", "padding", "dilation"))
    kh, kw = a["weight"].shape[-2:]
    if (kh, kw) == (1, 1) and pad == (0, 0) and a["groups"] == 1:
        # A 1x1 conv's input gradient is one matmul Wᵀg placed on the stride grid: measured
        # 1.3-5x faster than the transposed-conv kernel on CPU (docs/METRICS.md).
        # evidence: make bench peers/resnet18_quarter and peers/residual (1x1 stride-2 shortcuts)
        n, ch, ho, wo = g.shape
        r = torch.matmul(weight[:, :, 0, 0].T, g.reshape(n, ch, ho * wo)).view(n, -1, ho, wo)
        if r.shape[2:] == inp.shape[2:]:
            return r
        gi = c.zeros((n, *inp.shape[1:])).zero_()
        gi[:, :, : (ho - 1) * st[0] + 1 : st[0], : (wo - 1) * st[1] + 1 : st[1]] = r
        return gi
    extra = [
        inp.shape[2 + i] - ((g.shape[2 + i] - 1) * st[i] - 2 * pad[i] + dil[i] * ((kh, kw)[i] - 1) + 1)
        for i in range(2)
    ]
    # conv_transpose2d, not nn.grad.conv2d_input: measured up to 1.9x faster on CPU (docs/METRICS.md).
    # evidence: make bench peers/cnn_stride2 (GC alone; docs/METRICS.md "Measuring: `make bench`")
    rows = _chunk_rows(g, inp)
    if rows >= g.shape[0]:
        return F.conv_transpose2d(g, weight, None, st, pad, extra, a["groups"], dil)
    gi = g.new_empty((g.shape[0], *inp.shape[1:]))
    for i in range(0, g.shape[0], rows):
        gi[i : i + rows] = F.conv_transpose2d(g[i : i + rows], weight, None, st, pad, extra, a["groups"], dil)
    return gi


# The transposed conv over the m·b folded rows runs slower per row once the cotangent and the result
# outgrow a core's L2 (2 MiB here). In chunks of about that size (interleaved A/B, whole -> chunked,
# medians of 5 rounds): GC alone 24.3 -> 14.5 ms and the suite 32.4 -> 23.9 ms on the CNN, 38.3 -> 25.7
# and 58.2 -> 37.8 ms on the stride-2 CNN; the residual net and ResNet-18 ¼ within ±10% either way
# (docs/METRICS.md, "Chunked rows").
# evidence: make bench peers/cnn, peers/cnn_stride2, peers/residual, peers/resnet18_quarter (GC alone and suite)
CHUNK_BYTES = 2 << 20


def _chunk_rows(g: Tensor, inp: Tensor) -> int:
    """Rows per transposed-conv call: about CHUNK_BYTES of cotangent plus result (g: (m·b, C_out, H', W'),
    inp: (b, C_in, H, W), the forward's input)."""
    per_row = (g[0].numel() + inp[0].numel()) * g.element_size()
    return max(1, CHUNK_BYTES // per_row)


def _vjp_linear(c: Backward) -> Tensor:
    return c.g @ c.op.a["weight"]


def _vjp_bn(c: Backward) -> Tensor:
    scale = bn_scale(c.op.a).view(1, -1, *([1] * (c.g.dim() - 2)))
    return c.g.mul_(scale) if c.inplace else c.g * scale


def _vjp_act(c: Backward) -> Tensor:
    op, a = c.op, c.op.a
    extra = {kk: v for kk, v in a.items() if kk not in ("input", "args", "kwargs", "inplace")}
    d = grad_from_call(op.func, a["input"], op.out, lambda z: op.func(z, *a["args"], **a["kwargs"], **extra))
    gr, d = example_rows(c.g, c.m, op.out), d.unsqueeze(1)
    return (gr.mul_(d) if c.inplace else gr * d).reshape(c.g.shape)


def _vjp_maxpool(c: Backward) -> Tensor:
    inp, m = c.op.a["input"], c.m
    b, C = inp.shape[:2]
    gi = c.zeros((b, m, C, inp[0, 0].numel())).zero_()
    idx = c.op.extra.reshape(b, 1, C, -1).expand(-1, m, -1, -1)
    return gi.scatter_add_(3, idx, c.g.reshape(b, m, C, -1)).reshape(m * b, *inp.shape[1:])


def _vjp_avgpool(c: Backward) -> Tensor:
    a = c.op.a
    return torch.ops.aten.avg_pool2d_backward(
        c.g,
        _expand_like(a["input"], c.m),
        a["kernel_size"],
        a["stride"] or a["kernel_size"],
        a["padding"],
        a["ceil_mode"],
        a["count_include_pad"],
        a["divisor_override"],
    )


def _vjp_adaptive(c: Backward) -> Tensor:
    inp, g = c.op.a["input"], c.g
    H, W = inp.shape[-2:]
    if tuple(c.op.out.shape[-2:]) == (1, 1):
        return (g / (H * W)).expand(*g.shape[:-2], H, W)
    # The aten kernel behind autograd's backward (underscore-named, no public alias): one call, no graph.
    return torch.ops.aten._adaptive_avg_pool2d_backward(g, _expand_like(inp, c.m))


def _vjp_reshape(c: Backward) -> Tensor:
    inp = c.op.a["input"]
    return c.g.reshape(c.m * inp.shape[0], *inp.shape[1:])


VJPS = {
    CONV: _vjp_conv,
    LINEAR: _vjp_linear,
    BN: _vjp_bn,
    "act": _vjp_act,
    "maxpool": _vjp_maxpool,
    "avgpool": _vjp_avgpool,
    "adaptive": _vjp_adaptive,
    "reshape": _vjp_reshape,
    "identity": lambda c: c.g,
}

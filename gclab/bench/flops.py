"""The multiply-add floor of GC and of the suite on a net, counted on the net itself
(docs/METRICS.md, "Cost model and the floor" and "Bench catalogue").

With ``torch.utils.flop_counter.FlopCounterMode`` (matmul, conv, attention kernels) on float32:

- F_fwd: one forward of the batch;
- F_data: one backward-data row (one VJP to the input, no weight gradients);
- F_w: the weight-gradient work of one row (a backward to weights and input, minus F_data);
- F_plain: a plain step's forward and backward (weights only, as an optimizer step needs).

Exact GC needs the forward and k backward-data rows; the suite also needs every example's k
per-logit weight gradients (or their norms), at least k weight-gradient passes when they are
materialized:

    floor_gc    = (F_fwd + k·F_data) / F_plain
    floor_suite = (F_fwd + k·F_data + k·F_w) / F_plain

Ghost norms can undercut the k·F_w term on a layer whose T positions per example satisfy
T < p·q / (p + q) (docs/METRICS.md, "Ghost norms"); the floor here is the one of materialized rows.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def _count(fn) -> int:
    # Without oneDNN, CPU LSTMs run as counted matmuls (its fused RNN kernels have no FLOP formula).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # flags() warns about TF32 on Intel GPUs
        with torch.backends.mkldnn.flags(enabled=False), FlopCounterMode(display=False) as counter:
            fn()
    return counter.get_total_flops()


def flop_floor(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    """Counted FLOPs (F_fwd, F_data, F_w, F_plain) and the two floors, for x: (b, *input_shape), y: (b,).
    Uses ``.backward()`` (the counter's module tracker does not support ``autograd.grad``) and leaves
    every ``.grad`` and ``requires_grad`` as it found them."""
    params = [p for p in model.parameters() if p.requires_grad]
    saved = [p.grad for p in params]

    shape = {}

    def forward():  # with autograd on, as in a step (no_grad would take MultiheadAttention's uncounted fast path)
        shape["out"] = model(x).shape

    def plain():
        F.cross_entropy(model(x), y).backward()

    def row(with_weights: bool):
        for p in params:
            p.requires_grad_(with_weights)
        try:
            xr = x.detach().requires_grad_(True)
            out = model(xr)
            out.backward(torch.ones_like(out))
        finally:
            for p in params:
                p.requires_grad_(True)

    try:
        f_fwd, f_plain = _count(forward), _count(plain)
        f_data = _count(lambda: row(False)) - f_fwd
        f_w = _count(lambda: row(True)) - f_fwd - f_data
    finally:
        for p, g in zip(params, saved):
            p.grad = g
    k = int(shape["out"][1])
    return {
        "flops_forward": f_fwd,
        "flops_backward_data_row": f_data,
        "flops_weight_grad_row": f_w,
        "flops_plain_step": f_plain,
        "k": k,
        "floor_gc_x_plain": (f_fwd + k * f_data) / f_plain,
        "floor_suite_x_plain": (f_fwd + k * f_data + k * f_w) / f_plain,
    }

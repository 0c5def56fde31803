"""The one pass: one forward that keeps every parametrized layer's input, and one batched
backward of ``m`` cotangent rows to every layer output and to the input.

Three exact implementations, same result:

- ``chain.py``: plain ``nn.Sequential`` stacks of Linear and element-wise activations
  (the paper's MLPs) run a hand-written backward with one ``(m·b, n) @ W`` matmul per layer;
  it is ~2.5x faster than vmap-over-autograd on CPU, which matters for the per-step budget
  (evidence: make bench metrics and peers/mlp, docs/METRICS.md "Measuring: `make bench`").
- conv / residual nets (``tape.py``): the forward is recorded as a tape of torch calls and
  a hand-written backward runs all rows folded into the batch dimension;
- anything else (``generic.py``): forward hooks save ``h_l`` and ``z_l``, then ONE
  ``torch.autograd.grad(..., is_grads_batched=True)`` call returns ``∂rows/∂z_l`` and
  ``∂rows/∂x`` for all rows at once; parameters no rule covers get the exact generic fallback
  (``fallback.py``).

``check_model`` is the one place that decides how a model is covered (``Plan``). The model is
assumed to treat examples independently — train-mode BatchNorm, which does not, is refused.
"""

from __future__ import annotations

import weakref
from dataclasses import replace

import torch
from torch import Tensor, nn

from gclab.collect.metrics import chain, generic, tape
from gclab.collect.metrics.fallback import warn_once
from gclab.collect.metrics.plan import (
    BATCHED_VJP,
    BATCHNORMS,
    CHAIN,
    TAPE,
    Plan,
    check_model,
    mixes_batch,
    note_tape_refused,
    pass_method,
)
from gclab.collect.metrics.signals import Cotangents, Pass
from gclab.collect.metrics.workspace import NoWorkspace, workspace


def run_pass(
    model: nn.Module,
    x: Tensor,
    cot: Cotangents = None,
    *,
    need_input: bool = True,
    need_layers: bool = True,
    reuse_buffers: bool = False,
    gc_input: str | None = None,
) -> Pass:
    """Forward once, backward all cotangent rows once. ``cot=None``: the k one-hot rows.

    ``gc_input``: the name (as in ``model.named_modules()``) of the submodule whose output is the
    input GC is taken with respect to (token models: the embedding); None: ``x`` itself.
    The returned tensors belong to the caller. ``reuse_buffers=True`` (for callers that reduce
    the pass before returning, e.g. ``step_terms``) lets the fast paths keep their large tensors
    in a per-thread workspace instead: the next such call in the thread overwrites them."""
    if need_input and gc_input is None and not torch.is_floating_point(x):
        raise TypeError(
            f"x must be a floating-point tensor (inputs are differentiated), got {x.dtype}; for token "
            "inputs name the module whose output GC is taken w.r.t., e.g. gc_input='embed'"
        )
    plan = check_model(model, need_params=need_layers)
    ws = workspace() if reuse_buffers else NoWorkspace()
    method, spec = pass_method(model, x, plan, gc_input=gc_input, need_layers=need_layers)
    if method == CHAIN:
        assert spec is not None  # pass_method parsed it
        with torch.no_grad():
            res = chain.run(spec, x, cot, plan.entries, need_input=need_input, need_layers=need_layers, ws=ws)
        if res is not None:
            return _remember(model, replace(res, method=CHAIN))
    if method == TAPE:
        try:
            with torch.no_grad():
                res = tape.run(model, x, cot, plan.entries, need_input=need_input, need_layers=need_layers, ws=ws)
            return _remember(model, replace(res, method=TAPE))
        except tape.NotTape:
            note_tape_refused(model, x, need_layers=need_layers)
    with torch.inference_mode(False):  # the autograd path needs autograd, also under a caller's inference mode
        res = generic.run(model, x, cot, plan, need_input=need_input, need_layers=need_layers, gc_input=gc_input)
    if need_layers:
        warn_once(model, res.fallback)
    return _remember(model, replace(res, method=BATCHED_VJP))


__all__ = ["BATCHNORMS", "Plan", "check_model", "fallback_layers", "mixes_batch", "run_pass"]

_LAST_FALLBACK: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _remember(model: nn.Module, p: Pass) -> Pass:
    if p.layers or p.fallback:
        _LAST_FALLBACK[model] = p.fallback
    return p


def fallback_layers(model: nn.Module) -> tuple[str, ...]:
    """The layers the last pass over ``model`` (with per-layer metrics) covered by the generic
    fallback, as "'name' (Type) (why)" labels; () when every layer had a rule. The recorder stores them."""
    return _LAST_FALLBACK.get(model, ())

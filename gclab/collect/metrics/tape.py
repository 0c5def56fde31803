"""Fast exact path for conv and residual nets: record the forward as a tape of torch calls,
then run ONE hand-written backward of all ``m`` cotangent rows with the rows folded into the
batch dimension (``(b·m, C, H, W)``), so every op's backward is one plain kernel call:
conv → transposed conv, eval BatchNorm → per-channel scale, ReLU → mask,
pooling → its aten backward, residual add → fan-out sum, Flatten → reshape, Linear → matmul.

Why not ``autograd.grad(..., is_grads_batched=True)``: vmap over the autograd graph costs
~2x the same kernels on CPU (docs/METRICS.md). The tape is recorded by a
``TorchFunctionMode`` during a no-grad forward, so any ``forward`` with Python control flow
works; a call outside the supported set (or any in-place op) raises ``NotTape`` and the
caller falls back to the generic autograd path — same numbers, slower. The recording is
``tape_record.py``, the per-op backwards ``tape_vjps.py``.
"""

from __future__ import annotations

from collections import Counter

from torch import Tensor, nn

from gclab.collect.metrics.signals import LayerSignal, Pass, check_out, onehot_rows
from gclab.collect.metrics.tape_record import (
    BN,
    CONV,
    LAYER_KINDS,
    LINEAR,
    NotTape,
    Op,
    as_pair,
    record,
)
from gclab.collect.metrics.tape_vjps import CHUNK_BYTES, bn_scale, example_rows, vjp
from gclab.collect.metrics.workspace import NoWorkspace

__all__ = ["CHUNK_BYTES", "NotTape", "backward", "run"]


# Element-wise backwards that may run in place on a cotangent no one else holds.
_INPLACE = {"act", "bn"}
# Backwards returning a fresh tensor (ours to overwrite later); reshape/identity pass ownership on.
_FRESH = {CONV, LINEAR, "maxpool", "avgpool"}


def _folds(ops: list[Op], out: Tensor, foldable: set[int]) -> set[int]:
    """Ids of eval-BatchNorm outputs whose input is a conv output in ``foldable`` that nothing else
    reads: their backward (a per-channel scale) moves into the conv's (docs/METRICS.md)."""
    uses = Counter(i for op in ops for i in op.ins)
    uses[id(out)] += 1
    return {id(op.out) for op in ops if op.kind == BN and op.ins[0] in foldable and uses[op.ins[0]] == 1}


# C901 kept: the reverse sweep with its BatchNorm fold and workspace, one loop over the tape
def backward(  # noqa: C901
    x: Tensor,
    out: Tensor,
    ops: list[Op],
    rows: Tensor,
    need_input: bool,
    layer_ids: set[int],
    ws=None,
    foldable: set[int] = frozenset(),
) -> tuple[dict[int, Tensor], Tensor | None, dict[int, Tensor]]:
    """Cotangents (b·m, *out) of every layer-op output in ``layer_ids`` (by id of the output) and
    of x. Rows are folded example-major, (b, m) -> b·m, so that a rule's per-example products
    see each example's m rows as one contiguous matrix (no copy before its matmul).
    With a ``Workspace``, results built from zeros (max-pool backwards) live in it.
    An eval BatchNorm right after a conv in ``foldable`` (ids of conv outputs) passes its cotangent
    on unscaled: the conv's delta is then that cotangent times ``scales[id(conv out)]`` (per channel),
    and its transposed conv uses the scaled weight. Saves one full-size pass per conv-BN pair."""
    m, b = rows.shape[:2]
    ws = ws or NoWorkspace()
    cot: dict[int, Tensor] = {id(out): rows.transpose(0, 1).reshape(b * m, *out.shape[1:])}
    owned: set[int] = set()  # ids of cotangents no other tensor aliases
    deltas: dict[int, Tensor] = {}
    folds, scales = _folds(ops, out, foldable), {}
    for pos in range(len(ops) - 1, -1, -1):
        op = ops[pos]
        g = cot.pop(id(op.out), None)
        if g is None:
            continue
        mine = id(g) in owned
        owned.discard(id(g))
        if id(op.out) in layer_ids:
            deltas[id(op.out)], mine = g, False  # the rule reads it later
        if id(op.out) in folds:
            scales[op.ins[0]] = bn_scale(op.a)  # read by the conv that produced the BN's input
            targets = [(op.ins[0], g, mine)]
        elif op.kind == "add":
            targets = [(i, g, mine and len(op.ins) == 1) for i in op.ins]
        else:
            if op.ins == [id(x)] and not need_input:
                continue
            inplace = mine and op.kind in _INPLACE
            buf = lambda shape: ws.get(("tape", pos), shape, g)  # noqa: B023, E731 — called at once
            gi = vjp(op, g, m, inplace, buf, scales.get(id(op.out)))
            fresh = op.kind in _FRESH or inplace or (mine and op.kind in ("reshape", "identity"))
            targets = [(op.ins[0], gi, fresh)]
        for i, gi, fresh in targets:
            if i not in cot:
                cot[i] = gi
            elif id(cot[i]) in owned:
                cot[i].add_(gi)
                continue
            else:
                cot[i] = cot[i] + gi
                fresh = True
            if fresh:
                owned.add(id(cot[i]))
    return deltas, cot.get(id(x)), scales


def _layer_of(op: Op, by_param: dict[int, tuple]) -> tuple | None:
    """The (name, module, rule) whose parameters this conv/linear/bn call uses, checked to be the
    module's own call (the rule re-derives stride/padding/... from the module)."""
    if op.kind not in LAYER_KINDS:
        return None
    ids = {id(op.a[n]) for n in ("weight", "bias") if isinstance(op.a.get(n), Tensor)}
    hits = {by_param[i][0]: by_param[i] for i in ids if i in by_param}
    if not hits:
        return None
    name, mod, rule = next(iter(hits.values()))
    if len(hits) > 1 or op.a["weight"] is not getattr(mod, "weight", None):
        raise NotTape(f"module '{name}' parameters used in a call that is not its own")
    if op.kind == CONV:
        same = all(as_pair(op.a[n]) == getattr(mod, n) for n in ("stride", "padding", "dilation"))
        if not same or op.a["groups"] != mod.groups or mod.padding_mode != "zeros":
            raise NotTape(f"conv2d call differs from module '{name}'")
    return name, mod, rule


def run(model: nn.Module, x: Tensor, cot, entries, *, need_input: bool, need_layers: bool, ws=None) -> Pass:
    """The one pass (``signals.Pass``) over the recorded tape; raises NotTape."""
    by_param = {id(p): (name, mod, rule) for name, mod, rule in entries for p in rule.params()}
    out, ops = record(model, x, {i: e[0] for i, e in by_param.items()})
    check_out(out, x.shape[0])
    layer_ops, seen = [], set()
    if need_layers:
        for op in ops:
            hit = _layer_of(op, by_param)
            if hit is not None:
                if id(hit[1]) in seen:
                    raise NotTape(f"module '{hit[0]}' ran twice")
                seen.add(id(hit[1]))
                layer_ops.append((op, hit))
    rows = onehot_rows(out) if cot is None else cot(out)
    m = rows.shape[0]
    layer_ids = {id(op.out) for op, _ in layer_ops}
    # A conv may take a folded BatchNorm scale unless it is a layer whose rule cannot carry one.
    foldable = {id(op.out) for op in ops if op.kind == CONV and id(op.out) not in layer_ids}
    foldable |= {id(op.out) for op, (_, _, rule) in layer_ops if op.kind == CONV and rule.takes_out_scale}
    deltas, gx, scales = backward(x, out, ops, rows, need_input, layer_ids, ws, foldable)
    layers = []
    for op, (name, mod, rule) in layer_ops:
        g = deltas.get(id(op.out))
        g = op.out.new_zeros(m, *op.out.shape) if g is None else example_rows(g, m, op.out).transpose(0, 1)
        scale = scales.get(id(op.out))
        ctx = rule.prepare(op.a["input"]) if scale is None else rule.prepare(op.a["input"], out_scale=scale)
        layers.append(LayerSignal(name, mod, rule, ctx, g))
    if need_input:
        gx = x.new_zeros(m, *x.shape) if gx is None else example_rows(gx, m, x).transpose(0, 1)
    unused = [p for _, mod, r in entries if id(mod) not in seen for p in r.params()] if need_layers else []
    return Pass(out, layers, gx, unused)

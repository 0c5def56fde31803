"""Fast exact path for conv and residual nets: record the forward as a tape of torch calls,
then run ONE hand-written backward of all ``m`` cotangent rows with the rows folded into the
batch dimension (``(b·m, C, H, W)``), so every op's backward is one plain kernel call:
conv → transposed conv, eval BatchNorm → per-channel scale, ReLU → mask,
pooling → its aten backward, residual add → fan-out sum, Flatten → reshape, Linear → matmul.

Why not ``autograd.grad(..., is_grads_batched=True)``: vmap over the autograd graph costs
~2x the same kernels on CPU (docs/METRICS.md). The tape is recorded by a
``TorchFunctionMode`` during a no-grad forward, so any ``forward`` with Python control flow
works; a call outside the supported set (or any in-place op) raises ``NotTape`` and the
caller falls back to the generic autograd path — same numbers, slower.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from gclab.collect.metrics.activations import BY_FUNCTION, grad_from_call
from gclab.collect.metrics.chain import has_hooks
from gclab.collect.metrics.signals import LayerSignal, Pass, check_out, onehot_rows
from gclab.collect.metrics.workspace import NoWorkspace


class NotTape(Exception):
    pass


def _pair(v) -> tuple[int, int]:
    """A conv argument given as an int or a pair, as a pair (what conv2d does with it)."""
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


# Argument layouts (as the functional API documents them), so positional and keyword calls bind alike.
def _conv_args(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return locals()


def _linear_args(input, weight, bias=None):
    return locals()


def _bn_args(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    return locals()


def _maxpool_args(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    return locals()


def _avgpool_args(
    input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None
):
    return locals()


def _adaptive_args(input, output_size):
    return locals()


def _add_args(input, other, *, alpha=1, out=None):
    return locals()


def _act_args(input, *args, inplace=False, **kwargs):
    return locals()


def _dropout_args(input, p=0.5, training=True, inplace=False):
    return locals()


CONV, LINEAR, BN = "conv", "linear", "bn"
_KIND = {
    F.conv2d: CONV,
    F.linear: LINEAR,
    F.batch_norm: BN,
    F.max_pool2d: "maxpool",
    F.avg_pool2d: "avgpool",
    F.adaptive_avg_pool2d: "adaptive",
    torch.Tensor.add: "add",
    torch.Tensor.__add__: "add",
    torch.Tensor.__radd__: "add",
    torch.add: "add",
}
_BIND = {
    CONV: _conv_args,
    LINEAR: _linear_args,
    BN: _bn_args,
    "maxpool": _maxpool_args,
    "avgpool": _avgpool_args,
    "adaptive": _adaptive_args,
    "add": _add_args,
    "act": _act_args,
    "dropout": _dropout_args,
}
_RESHAPES = {
    torch.flatten,
    torch.Tensor.flatten,
    torch.Tensor.view,
    torch.Tensor.reshape,
    torch.reshape,
    torch.Tensor.unflatten,
    torch.Tensor.unsqueeze,
    torch.Tensor.squeeze,
}
_IDENTITY = {torch.Tensor.contiguous, torch.Tensor.clone}
_PASSIVE = {
    torch.Tensor.dim,
    torch.Tensor.size,
    torch.Tensor.shape.__get__,
    torch.Tensor.numel,
    torch.Tensor.dtype.__get__,
    torch.Tensor.device.__get__,
    torch.Tensor.requires_grad.__get__,
}


@dataclass
class Op:
    kind: str
    func: Any
    a: dict  # bound arguments
    ins: list[int]  # ids of tracked tensor inputs
    out: Tensor
    extra: Any = None  # max-pool indices


class _Recorder(TorchFunctionMode):
    def __init__(self, x: Tensor, params: dict[int, str]):
        super().__init__()
        self.tracked = {id(x): x}
        self.params = params  # id(trainable parameter) -> its name: only layer ops may touch them
        self.ops: list[Op] = []

    # C901 kept: torch's dispatch hook classifies every op in one place (a dispatch per call is what the tape costs)
    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: C901
        kwargs = kwargs or {}
        if func in _PASSIVE:
            return func(*args, **kwargs)
        flat = list(args) + list(kwargs.values())
        ins = [id(t) for t in flat if isinstance(t, Tensor) and id(t) in self.tracked]
        kind = _KIND.get(func) or (
            "dropout"
            if func is F.dropout
            else "act"
            if func in BY_FUNCTION
            else "reshape"
            if func in _RESHAPES
            else "identity"
            if func in _IDENTITY
            else None
        )
        touched = [self.params[id(t)] for t in flat if isinstance(t, Tensor) and id(t) in self.params]
        if touched and kind not in (CONV, LINEAR, BN):
            raise NotTape(f"parameter {touched[0]} used by {getattr(func, '__name__', func)}")
        if not ins:
            return func(*args, **kwargs)
        name = getattr(func, "__name__", str(func))
        if kind is None or name.endswith("_") or kwargs.get("inplace") or kwargs.get("out") is not None:
            raise NotTape(f"unsupported or in-place op {name}")
        a = _BIND[kind](*args, **kwargs) if kind in _BIND else {"input": args[0]}
        if a.get("inplace"):
            raise NotTape(f"in-place {name}")
        if kind == "dropout":
            if a["training"] and a["p"] > 0:
                raise NotTape("dropout in training mode")
            kind = "identity"
        extra = None
        if kind == "maxpool":
            if a["return_indices"]:
                raise NotTape("max_pool2d with return_indices")
            out, extra = F.max_pool2d(**{**a, "return_indices": True})
        else:
            out = func(*args, **kwargs)
        if kind in ("identity", "reshape") and out is a["input"]:
            return out  # e.g. eval dropout, contiguous(): the same tensor, nothing to record
        if not isinstance(out, Tensor) or any(out is self.tracked[i] for i in ins):
            raise NotTape(f"{name} returned a tracked tensor or a non-tensor")
        self._check(kind, a, ins, out, name)
        self.tracked[id(out)] = out
        self.ops.append(Op(kind, func, a, ins, out, extra))
        return out

    def _check(self, kind, a, ins, out, name):
        inp = a.get("input")
        if kind in (CONV, LINEAR, BN, "maxpool", "avgpool", "adaptive", "act", "reshape", "identity"):
            if ins != [id(inp)]:
                raise NotTape(f"{name}: only its first argument may depend on the input")
        if kind == CONV and (isinstance(a["padding"], str) or inp.dim() != 4):
            raise NotTape("conv2d with string padding or unbatched input")
        if kind == BN and a["training"]:
            raise NotTape("batch_norm in training mode")
        if kind == "reshape" and (out.dim() == 0 or inp.dim() == 0 or out.shape[0] != inp.shape[0]):
            raise NotTape(f"{name} moves the batch dimension")
        if kind == "add":
            other = a["other"]
            if a["alpha"] != 1 or (isinstance(other, Tensor) and other.shape != a["input"].shape):
                raise NotTape("add with alpha or broadcasting")


def record(model: nn.Module, x: Tensor, params: dict[int, str]) -> tuple[Tensor, list[Op]]:
    """Forward under no_grad, returning (out, tape). Raises NotTape if the tape would be unfaithful."""
    for name, mod in model.named_modules():
        if has_hooks(mod):
            raise NotTape(f"module '{name}' has hooks")
        if isinstance(mod, nn.Dropout) and mod.training and mod.p > 0:
            raise NotTape("Dropout in train mode")
    rec = _Recorder(x, params)
    with torch.no_grad(), rec:
        out = model(x)
    if not isinstance(out, Tensor) or id(out) not in rec.tracked and out is not x:
        raise NotTape("the output does not depend on the input")
    return out, rec.ops


def _expand_like(t: Tensor, m: int) -> Tensor:
    """A zero-stride stand-in of shape (b·m, ...) for kernels that only read the input's shape."""
    return t.new_empty(()).expand(m * t.shape[0], *t.shape[1:])


def _rows(g: Tensor, m: int, like: Tensor) -> Tensor:
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
    One registered backward per op kind (``_VJPS``)."""
    return _VJPS[op.kind](Backward(op, g, m, inplace, buf or (lambda shape: g.new_zeros(shape)), out_scale))


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
    st, pad, dil = (_pair(a[n]) for n in ("stride", "padding", "dilation"))
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
    gr, d = _rows(c.g, c.m, op.out), d.unsqueeze(1)
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


_VJPS = {
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
    if op.kind not in (CONV, LINEAR, BN):
        return None
    ids = {id(op.a[n]) for n in ("weight", "bias") if isinstance(op.a.get(n), Tensor)}
    hits = {by_param[i][0]: by_param[i] for i in ids if i in by_param}
    if not hits:
        return None
    name, mod, rule = next(iter(hits.values()))
    if len(hits) > 1 or op.a["weight"] is not getattr(mod, "weight", None):
        raise NotTape(f"module '{name}' parameters used in a call that is not its own")
    if op.kind == CONV:
        same = all(_pair(op.a[n]) == getattr(mod, n) for n in ("stride", "padding", "dilation"))
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
        g = op.out.new_zeros(m, *op.out.shape) if g is None else _rows(g, m, op.out).transpose(0, 1)
        scale = scales.get(id(op.out))
        ctx = rule.prepare(op.a["input"]) if scale is None else rule.prepare(op.a["input"], out_scale=scale)
        layers.append(LayerSignal(name, mod, rule, ctx, g))
    if need_input:
        gx = x.new_zeros(m, *x.shape) if gx is None else _rows(gx, m, x).transpose(0, 1)
    unused = [p for _, mod, r in entries if id(mod) not in seen for p in r.params()] if need_layers else []
    return Pass(out, layers, gx, unused)

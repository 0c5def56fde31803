"""The tape's recording half (``tape.py``): a ``TorchFunctionMode`` that records a no-grad forward as
a list of ``Op`` (kind, function, bound arguments, tracked inputs, output), or raises ``NotTape`` when
a call is outside the supported set or in place, so the tape would not be faithful.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from gclab.collect.metrics.activations import BY_FUNCTION
from gclab.collect.metrics.chain import has_hooks


class NotTape(Exception):
    pass


def as_pair(v) -> tuple[int, int]:
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
LAYER_KINDS = (CONV, LINEAR, BN)  # the calls that may use a trainable parameter
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
        if touched and kind not in LAYER_KINDS:
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
        if kind in (*LAYER_KINDS, "maxpool", "avgpool", "adaptive", "act", "reshape", "identity"):
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

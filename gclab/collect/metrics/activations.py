"""The one registry of element-wise activations, read by both fast paths: ``chain`` matches
module types, ``tape`` matches the torch functions they call. An activation with a closed-form
derivative from its output (ReLU, tanh, sigmoid) gets it here, once; every other derivative is one
autograd call on the b-batch (``elementwise_grad``), exactly what torch's own backward computes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _relu_grad(a: Tensor, out: Tensor | None = None) -> Tensor:
    return torch.sign(a, out=out)  # 1 where the output is > 0, else 0


def _tanh_grad(a: Tensor, out: Tensor | None = None) -> Tensor:
    return torch.mul(a, a, out=out).neg_().add_(1)  # 1 − a²


def _sigmoid_grad(a: Tensor, out: Tensor | None = None) -> Tensor:
    return torch.mul(a, a, out=out).neg_().add_(a)  # a − a²


@dataclass(frozen=True)
class Activation:
    module: type[nn.Module]  # exact type match: a subclass may change forward
    functions: tuple  # the torch functions that compute it (what the tape sees)
    grad_from_output: Callable[..., Tensor] | None = None  # f'(z) from a = f(z), optionally into ``out``
    inplace: str | None = None  # the Tensor method computing it in place


ACTIVATIONS = (
    Activation(nn.ReLU, (F.relu, torch.relu, torch.Tensor.relu), _relu_grad, "relu_"),
    Activation(nn.Tanh, (torch.tanh, torch.Tensor.tanh, F.tanh), _tanh_grad, "tanh_"),
    Activation(nn.Sigmoid, (torch.sigmoid, torch.Tensor.sigmoid, F.sigmoid), _sigmoid_grad, "sigmoid_"),
    Activation(nn.GELU, (F.gelu,)),
    Activation(nn.ELU, (F.elu,)),
    Activation(nn.CELU, (F.celu,)),
    Activation(nn.SELU, (F.selu,)),
    Activation(nn.SiLU, (F.silu,)),
    Activation(nn.Mish, (F.mish,)),
    Activation(nn.LeakyReLU, (F.leaky_relu,)),
    Activation(nn.Softplus, (F.softplus,)),
    Activation(nn.Hardtanh, (F.hardtanh,)),
    Activation(nn.ReLU6, (F.relu6,)),
    Activation(nn.Hardswish, (F.hardswish,)),
    Activation(nn.Hardsigmoid, (F.hardsigmoid,)),
    Activation(nn.LogSigmoid, (F.logsigmoid,)),
    Activation(nn.Softsign, ()),  # Python forward: the tape records its ops, the chain its module
    Activation(nn.Tanhshrink, ()),
)
BY_MODULE: dict[type, Activation] = {a.module: a for a in ACTIVATIONS}
BY_FUNCTION: dict = {f: a for a in ACTIVATIONS for f in a.functions}


def module_value_and_grad(mod: nn.Module, z: Tensor, *, owned: bool, out: Callable[[Tensor], Tensor]):
    """(mod(z), its element-wise derivative) for a registered activation module; ``owned``: z is our
    own buffer, which the activation may overwrite; ``out(like)``: a buffer for a closed-form derivative."""
    act = BY_MODULE[type(mod)]
    if act.grad_from_output is None:
        return elementwise_grad(mod, z)
    a = getattr(z, act.inplace)() if owned else act.functions[0](z)
    return a, act.grad_from_output(a, out(a))


def grad_from_call(func, z: Tensor, a: Tensor, call: Callable[[Tensor], Tensor]) -> Tensor:
    """The derivative of a recorded activation call ``a = func(z, ...)``; ``call(z)`` repeats it."""
    act = BY_FUNCTION[func]
    return act.grad_from_output(a) if act.grad_from_output is not None else elementwise_grad(call, z)[1]


def elementwise_grad(f, z: Tensor) -> tuple[Tensor, Tensor]:
    """(f(z), f'(z)) of an element-wise f by one autograd call. Autograd is off in inference mode
    (where the fast paths run), so this leaves it, on a normal-tensor copy of z (f may work in place)."""
    with torch.inference_mode(False), torch.enable_grad():
        zz = z.clone().requires_grad_(True)
        a = f(zz.clone())
        (d,) = torch.autograd.grad(a, zz, torch.ones_like(a))
    return a.detach(), d

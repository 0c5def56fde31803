"""Fast exact path for plain dense stacks: ``nn.Sequential`` (possibly nested) of Linear,
element-wise activations, Identity, eval Dropout and a leading Flatten.

For such a stack the batched backward of m cotangent rows is, per layer,
``δ_{l-1} = (δ_l @ W_l) ⊙ σ'(z_{l-1})``: one ``(m·b, n_out) @ (n_out, n_in)`` matmul. Written
by hand it avoids vmap's batching overhead (the slow part on CPU); with one-hot rows the
top layer's product is free (row i of δ_L W_L is the i-th row of W_L).
``theorem.py`` reuses ``parse``/``forward`` with ``strict=True`` and the ``Forward``'s
Jacobian-vector products.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gclab.collect.metrics.activations import BY_MODULE, module_value_and_grad
from gclab.collect.metrics.signals import LayerSignal, Pass, check_out
from gclab.collect.metrics.workspace import NoWorkspace

# The registered element-wise activations (exact type match: a subclass may change forward).
ELEMENTWISE = frozenset(BY_MODULE)


class NotChain(Exception):
    pass


@dataclass
class Chain:
    ops: list[tuple[str, str, nn.Module]]  # (kind, name, module), kind in {"linear", "act"}
    flatten: bool  # a Flatten comes before the first Linear


@dataclass
class Forward:
    """One forward of a chain: what its batched backward and its input Jacobians need."""

    out: Tensor
    h: list[Tensor]  # input of each Linear (h_0 = x, flattened)
    linears: list[tuple[str, nn.Linear]]
    d_pre: Tensor | None  # σ' of element-wise ops before the first Linear
    d_after: list[Tensor | None]  # σ' of the element-wise ops after Linear l

    def tangents(self, V: Tensor, upto: int | None = None) -> Iterator[Tensor]:
        """Tangents of h_0, h_1, …, h_upto (the Linear inputs, 0-based; default: all of them) for
        input tangents V (m, b, d): one batched Jacobian-vector product pushed through the stack."""
        if self.d_pre is not None:
            V = V * self.d_pre
        yield V
        for j in range(len(self.linears) - 1 if upto is None else upto):
            V = V @ self.linears[j][1].weight.T
            if self.d_after[j] is not None:
                V = V * self.d_after[j]
            yield V

    def jvp(self, V: Tensor, l: int) -> Tensor:
        """Tangents of h_l for input tangents V (m, b, d)."""
        return deque(self.tangents(V, l), maxlen=1)[0]

    def vjp(self, U: Tensor, l: int) -> Tensor:
        """Cotangents of x for cotangents U (m, b, n_l) of h_l: the adjoint of ``jvp``."""
        for j in range(l - 1, -1, -1):
            if self.d_after[j] is not None:
                U = U * self.d_after[j]
            U = U @ self.linears[j][1].weight
        if self.d_pre is not None:
            U = U * self.d_pre
        return U

    def first_input_spec(self) -> Tensor:
        """(b,) σ_max(∇_x h_0): max |σ'| of the element-wise ops before the first Linear, else 1."""
        return self.h[0].new_ones(self.h[0].shape[0]) if self.d_pre is None else self.d_pre.abs().amax(1)

    def hidden_tangents(self, V: Tensor) -> Iterator[Tensor]:
        """Tangents of h_1, …, h_{L-1} for input tangents V (m, b, d), in one sweep."""
        return islice(self.tangents(V), 1, None)

    def onehot_factors(self) -> list[tuple[Tensor, Tensor | None] | None]:
        """Per Linear, the ``LayerSignal.factors`` of the one-hot rows' δ (None where δ has no such form):
        at the top δ_L^i(x) = e_i ⊙ σ'_top(x); one layer down, with no top activation,
        δ_{L-1}^i(x) = W_L[i] ⊙ σ'(x)."""
        L, top = len(self.linears), self.d_after[-1]
        W = self.linears[-1][1].weight
        factors: list = [None] * L
        factors[-1] = (torch.eye(W.shape[0], dtype=W.dtype, device=W.device), top)
        if L > 1 and top is None:
            factors[-2] = (W, self.d_after[-2])
        return factors

    def backward(self, rows: Tensor | None, need_input: bool, ws=None) -> tuple[list[Tensor], Tensor | None]:
        """δ_l = ∂rows/∂z_l for every Linear (each (m, b, n_l)) and ∂rows/∂x (m, b, d) flattened.
        ``rows=None`` means the k one-hot rows. With a ``Workspace`` the results live in it."""
        ws = ws or NoWorkspace()
        out = self.out
        b, k = out.shape
        L = len(self.linears)
        top = self.d_after[-1]
        onehot = rows is None
        if onehot:
            m = k
            eye = torch.eye(k, dtype=out.dtype, device=out.device).unsqueeze(1)
            delta = eye.expand(k, b, k) if top is None else eye * top.unsqueeze(0)
        else:
            m = rows.shape[0]
            delta = rows if top is None else rows * top
        deltas: list[Tensor] = [delta] * L
        gx = None
        for l in range(L - 1, -1, -1):
            deltas[l] = delta
            if l == 0 and not need_input:
                break
            W = self.linears[l][1].weight
            d = self.d_pre if l == 0 else self.d_after[l - 1]
            buf = ws.get(("g", l), (m, b, W.shape[1]), out)
            if onehot and l == L - 1:
                # δ_L^i = e_i ⊙ σ'_top: δ_L^i W_L is (σ'_top)_i times the i-th row of W_L, no matmul.
                if top is not None:
                    g = torch.mul(top.T.unsqueeze(-1), W.unsqueeze(1), out=buf)
                elif d is not None:
                    g = torch.mul(W.unsqueeze(1), d, out=buf)
                    d = None
                else:
                    g = W.unsqueeze(1).expand(k, b, W.shape[1])
            else:
                g = torch.mm(delta.reshape(m * b, -1), W, out=buf.view(m * b, -1)).view(m, b, -1)
            if d is not None:
                g = g.mul_(d) if g.is_contiguous() else g * d
            if l == 0:
                gx = g
            else:
                delta = g
        return deltas, gx


def has_hooks(mod: nn.Module) -> bool:
    """Hooks may change what a module computes: such models take the autograd path.
    torch has no public way to list a module's hooks, so this reads its private hook dicts
    (and the global ones that ``nn.modules.module.register_module_forward_hook`` fills)."""
    g = nn.modules.module
    return bool(
        mod._forward_hooks
        or mod._forward_pre_hooks
        or mod._backward_hooks
        or getattr(mod, "_backward_pre_hooks", None)
        or getattr(g, "_global_forward_hooks", None)
        or getattr(g, "_global_forward_pre_hooks", None)
    )


def _leaves(mod: nn.Module, prefix: str):
    if has_hooks(mod):
        raise NotChain(f"module '{prefix or '<root>'}' ({type(mod).__name__}) has hooks")
    if isinstance(mod, nn.Sequential) and type(mod).forward is nn.Sequential.forward:
        # Sequential.forward runs _modules in order, repeats included; named_children() drops repeats.
        for name, child in mod._modules.items():
            if child is not None:
                yield from _leaves(child, f"{prefix}.{name}" if prefix else name)
    else:
        yield prefix or "<root>", mod


# C901 kept: one branch per module kind the dense chain takes (plan.check_model decides support; this only parses)
def parse(model: nn.Module, strict: bool = False) -> Chain | None:  # noqa: C901
    """The stack's ops, or None (strict: TypeError naming the offending module)."""
    try:
        ops, flatten, seen = [], False, {}
        for name, mod in _leaves(model, ""):
            t = type(mod)
            if isinstance(mod, nn.Linear) and t.forward is nn.Linear.forward:
                if id(mod) in seen:
                    # Weight sharing across calls: the generic path computes GC and refuses per-layer metrics.
                    raise NotChain(f"module '{name}' ({t.__name__}) appears twice (also as '{seen[id(mod)]}')")
                seen[id(mod)] = name
                ops.append(("linear", name, mod))
            elif t in ELEMENTWISE:
                ops.append(("act", name, mod))
            elif t is nn.Identity or (t is nn.Dropout and (not mod.training or mod.p == 0)):
                continue
            elif t is nn.Flatten and mod.start_dim == 1 and mod.end_dim == -1:
                if not any(k == "linear" for k, _, _ in ops):
                    flatten = True
            else:
                raise NotChain(f"module '{name}' ({t.__name__}) is not Linear or an element-wise activation")
        if not any(k == "linear" for k, _, _ in ops):
            raise NotChain("the model has no Linear layer")
        return Chain(ops, flatten)
    except NotChain as exc:
        if strict:
            raise TypeError(
                f"expected a plain feed-forward nn.Sequential of Linear layers and element-wise activations: {exc}"
            ) from None
        return None


def forward(spec: Chain, x: Tensor, ws=None) -> Forward | None:
    """Forward keeping each Linear's input and the activation derivatives (no autograd graph).
    With a ``Workspace``, the tensors returned live in it until the next call."""
    ws = ws or NoWorkspace()
    b = x.shape[0]
    h = x.reshape(b, -1) if spec.flatten else x
    if h.dim() != 2:
        return None  # Linear on (b, ..., n) inputs: the generic path handles it
    hs, lins, d_after = [], [], []
    d, d_pre, owned = None, None, False
    for i, (kind, name, mod) in enumerate(spec.ops):
        if kind == "linear":
            if lins:
                d_after.append(d)
            else:
                d_pre = d
            d = None
            hs.append(h)
            lins.append((name, mod))
            W, bias = mod.weight, mod.bias
            h = F.linear(h, W, bias)  # one call (no transposed view); our own tensor, so activations may overwrite it
            owned = True
        else:
            h, dd = module_value_and_grad(mod, h, owned=owned, out=lambda a, i=i: ws.get(("d", i), a.shape, a))
            d = dd if d is None else d * dd
    d_after.append(d)
    return Forward(h, hs, lins, d_pre, d_after)


def run(spec: Chain, x: Tensor, cot, entries, *, need_input: bool, need_layers: bool, ws=None) -> Pass | None:
    """The one pass (``signals.Pass``) over a chain, or None if x does not fit. With a
    ``Workspace`` the returned tensors live in it until the next pass in this thread."""
    fw = forward(spec, x, ws)
    if fw is None:
        return None
    check_out(fw.out, x.shape[0])
    rows = None if cot is None else cot(fw.out)
    deltas, gx = fw.backward(rows, need_input, ws)
    if gx is not None:
        gx = gx.reshape(gx.shape[0], *x.shape)
    layers = []
    if need_layers:
        by_id = {id(mod): (name, mod, rule) for name, mod, rule in entries}
        factors = fw.onehot_factors() if rows is None else [None] * len(deltas)
        for h, (_, mod), delta, fac in zip(fw.h, fw.linears, deltas, factors):
            if id(mod) in by_id:
                name, _, rule = by_id[id(mod)]
                layers.append(LayerSignal(name, mod, rule, rule.prepare(h), delta, fac))
    return Pass(fw.out, layers, gx, [])

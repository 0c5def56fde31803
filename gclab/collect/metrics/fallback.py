"""The exact generic fallback: per-example gradients of the parameters no rule covers, by torch.func.

Which parameters: those of a module without a rule (GRU, Conv3d, a bare ``nn.Parameter`` used
other than as one batch-first add, ...), and those a per-layer rule cannot see whole: a module
called more than once in a forward (RNN time steps written as a loop), a Parameter held by two
modules or used outside its module's own call (tied weights), a parametrized weight
(``torch.nn.utils.parametrize``). docs/METRICS.md, "The generic fallback".

How: the fallback is one more "layer" whose input is the model input ``x`` and whose output is
the logits, so its row cotangents are the rows themselves. For example x and row i, its gradient
is the VJP of ``f(θ_fb, x)`` with cotangent row i: ``vmap`` over the examples of ``torch.func.vjp``
of the model with its fallback Parameters swapped for the primals (the approach of Opacus's
``grad_sample/functorch.py``, applied to the model with only the fallback parameters as primals).
A model vmap cannot batch (data-dependent Python control flow, ``.item()``) gets the same numbers
from a per-example autograd loop.
"""

from __future__ import annotations

import warnings
import weakref
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import vjp, vmap

from gclab.collect.metrics.rules import Rule, mixed_from_per_example, split_flat, sq


@dataclass(frozen=True)
class FallbackContext:
    """What ``FallbackRule`` needs from the pass: the model input (b, *in)."""

    x: Tensor


class FallbackRule(Rule):
    """Per-example gradients of ``params`` (name in ``model.named_parameters()`` -> Parameter),
    materialized: ``per_example`` is (m, b, P_fb) for rows δ (m, b, k) at the model output."""

    def __init__(self, model: nn.Module, params: dict[str, nn.Parameter]):
        self.module = model
        self.trainable = dict(params)

    def prepare(self, x: Tensor) -> FallbackContext:
        return FallbackContext(x)

    def per_example(self, ctx: FallbackContext, delta: Tensor) -> Tensor:
        # torch.func needs autograd: leave the caller's inference mode, on normal-tensor copies.
        with torch.inference_mode(False):
            x, rows = ctx.x.clone(), delta.clone()
            try:
                J = self._vmapped(x, rows)
            except RuntimeError as exc:
                if "randomness" in str(exc):
                    raise ValueError(
                        "the model draws random numbers in its forward (Dropout in train mode?) and has "
                        f"layers that need the generic fallback ({', '.join(self.trainable)}): their "
                        "per-example gradients would use other masks than the pass; call model.eval() first"
                    ) from None
                J = self._looped(x, rows)
        return J

    def _vmapped(self, x: Tensor, rows: Tensor) -> Tensor:
        primals = {n: p.detach() for n, p in self.trainable.items()}
        slots = _slots(self.module, self.trainable)
        model = self.module

        def f(p: dict[str, Tensor], x1: Tensor) -> Tensor:
            with _swapped(slots, p):
                return model(x1.unsqueeze(0))[0]

        def one(x1: Tensor, r: Tensor) -> dict[str, Tensor]:  # x1 (*in), r (m, k)
            _, pull = vjp(lambda p: f(p, x1), primals)  # pyright: ignore[reportAssignmentType]  # no has_aux: 2-tuple
            return vmap(pull)(r)[0]

        # No graph through the model's other parameters: torch.func ignores an outer no_grad.
        with torch.no_grad():
            J = vmap(one, in_dims=(0, 1))(x, rows)  # name -> (b, m, *shape)
        return self._flat(J, rows)

    def _looped(self, x: Tensor, rows: Tensor) -> Tensor:
        """One autograd call per example, its m rows batched (``is_grads_batched``; one call per row
        if that cannot batch either): slower, for models vmap cannot batch (e.g. nn.LSTM)."""
        names, params = list(self.trainable), list(self.trainable.values())
        m, b = rows.shape[:2]
        out = {n: torch.zeros(b, m, *p.shape, dtype=rows.dtype, device=rows.device) for n, p in zip(names, params)}
        for j in range(b):
            with torch.enable_grad():
                f = self.module(x[j : j + 1])[0]
            for i, g in self._rows_of_one(f, params, rows[:, j]):
                for n, gi in zip(names, g):
                    if gi is not None:
                        out[n][j, i] = gi
        return self._flat(out, rows)

    @staticmethod
    def _rows_of_one(f: Tensor, params: list[nn.Parameter], r: Tensor):
        """(row index or slice, gradients of r[i]·f) for one example's output f (k,) and rows r (m, k)."""
        try:
            g = torch.autograd.grad(f, params, r, retain_graph=True, allow_unused=True, is_grads_batched=True)
            return [(slice(None), g)]
        except RuntimeError:
            m = r.shape[0]
            return [
                (i, torch.autograd.grad(f, params, r[i], retain_graph=i < m - 1, allow_unused=True)) for i in range(m)
            ]

    def _flat(self, J: dict[str, Tensor], rows: Tensor) -> Tensor:
        m, b = rows.shape[:2]
        return torch.cat([J[n].reshape(b, m, -1) for n in self.trainable], -1).transpose(0, 1)

    def sq_norms(self, ctx, delta):
        return sq(self.per_example(ctx, delta), -1)

    def grads(self, ctx, delta):
        return split_flat(self.per_example(ctx, delta[None])[0].sum(0), self.trainable)

    def row_terms(self, ctx, delta, w, factors=None):
        S, pe, total = mixed_from_per_example(self.per_example(ctx, delta), w)
        return S, pe, split_flat(total, self.trainable)


def _slots(model: nn.Module, params: dict[str, nn.Parameter]) -> list[tuple[dict, str, str, nn.Parameter]]:
    """Every (module._parameters, key) holding one of ``params``: a module listed twice in a
    Sequential or a Parameter held by two modules is swapped everywhere (torch.func.functional_call
    restores such repeats wrongly, leaving a plain tensor in the model)."""
    by_id = {id(p): n for n, p in params.items()}
    out, seen = [], set()
    for mod in model.modules():
        if id(mod) in seen:
            continue
        seen.add(id(mod))
        for key, p in mod._parameters.items():
            if p is not None and id(p) in by_id:
                out.append((mod._parameters, key, by_id[id(p)], p))
    return out


@contextmanager
def _swapped(slots, values: dict[str, Tensor]):
    """The model with each fallback Parameter replaced by ``values[name]`` (a torch.func primal)."""
    try:
        for store, key, name, _ in slots:
            store[key] = values[name]
        yield
    finally:
        for store, key, _, p in slots:
            store[key] = p


# Keyed by the model itself, weakly: an id() is reused once a model is freed, which silenced the
# warning for a new model that happened to get a dead one's id.
_WARNED: weakref.WeakKeyDictionary[nn.Module, set[tuple[str, ...]]] = weakref.WeakKeyDictionary()


def warn_once(model: nn.Module, names: tuple[str, ...]) -> None:
    """One warning line per model and set of fallback layers (not one per step)."""
    seen = _WARNED.setdefault(model, set())
    if names and names not in seen:
        seen.add(names)
        warnings.warn(
            f"gclab: no per-example gradient rule for {', '.join(names)}: exact generic fallback "
            "(torch.func, slower; docs/METRICS.md)",
            stacklevel=4,
        )

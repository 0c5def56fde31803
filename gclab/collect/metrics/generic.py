"""The autograd path of the one pass: any model autograd can differentiate.

Forward hooks save each rule layer's input ``h_l`` and output ``z_l``; ONE
``torch.autograd.grad(..., is_grads_batched=True)`` call returns ``∂rows/∂z_l`` for every layer
and ``∂rows/∂x`` (or ``∂rows/∂e``, e the output of the module named by ``gc_input``) for all rows
at once. What the per-layer rules cannot see whole is handed to the generic fallback
(``fallback.py``): layers without a rule (decided by ``capture.check_model``), and, found here
while the forward runs, a rule layer called more than once or whose parameter is used outside
its own call (tied weights). docs/METRICS.md, "The generic fallback".
"""

from __future__ import annotations

from collections import Counter
from contextlib import nullcontext

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from gclab.collect.metrics.added_parameter import AddedParameterRule, added_result
from gclab.collect.metrics.fallback import FallbackRule
from gclab.collect.metrics.plan import Plan
from gclab.collect.metrics.signals import LayerSignal, Pass, check_out, onehot_rows


class _Watch(TorchFunctionMode):
    """Counts each rule layer's calls and notes layers whose parameters an op uses while the
    layer is not running (a weight tied into another call): their hook-based signal would miss that use."""

    def __init__(self, owner: dict[int, int], bare: dict[int, str], b: int):
        super().__init__()
        self.owner = owner  # id(parameter) -> id(its layer)
        self.bare, self.b = bare, b  # id(fallback parameter) -> its name; the batch size
        self.added: dict[int, list[tuple[Tensor, Tensor]]] = {}  # id(bare parameter) -> [(X + P, its probe)]
        self.other_use: set[int] = set()  # bare parameters used in any other call
        self.active: Counter = Counter()
        self.calls: Counter = Counter()
        self.outside: set[int] = set()
        self.unreplayable: set[int] = set()  # replaying layers whose input the rule cannot replay
        self.muted = 0  # > 0 while a replaying layer's own forward runs

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.muted:  # a replaying layer's own forward: its output is replaced, its uses do not count
            return func(*args, **kwargs)
        hit = added_result(func, args, kwargs, self.bare, self.b) if self.bare else None
        if hit is not None:  # X + P: a zero probe on the sum gives P's per-example cotangent
            r = hit[1]
            probe = torch.zeros_like(r).requires_grad_(True)
            self.added.setdefault(hit[0], []).append((r.detach(), probe))
            return r + probe
        for t in tree_flatten((args, kwargs))[0]:
            if not isinstance(t, Tensor):
                continue
            o = self.owner.get(id(t))
            if o is not None and not self.active[o]:
                self.outside.add(o)
            if id(t) in self.bare:
                self.other_use.add(id(t))
        return func(*args, **kwargs)

    def promoted(self) -> dict[int, tuple[Tensor, Tensor]]:
        """id(bare parameter) -> (X + P, probe) for those whose one use was one such add."""
        return {i: uses[0] for i, uses in self.added.items() if len(uses) == 1 and i not in self.other_use}


def _input_module(model: nn.Module, gc_input: str) -> nn.Module:
    mods = dict(model.named_modules())
    if gc_input not in mods or gc_input == "":
        some = ", ".join(repr(n) for n in list(mods)[1:6])
        raise ValueError(
            f"gc_input={gc_input!r} names no submodule of the model; name one of its modules ({some}, ...)"
        )
    return mods[gc_input]


def _replayed(mod: nn.Module, rule, inp, kwargs, out, watch: _Watch, saved: dict):
    """The forward hook of a replaying rule's layer (``Rule.replay``): its recomputed output, or None."""
    watch.muted -= 1
    # Recomputed while the layer still counts as running: its weights' uses are its own.
    got = rule.replay(inp, out, kwargs) if watch.calls[id(mod)] == 1 else None
    watch.active[id(mod)] -= 1
    if got is None:  # the layer and its children (whose weights its own forward used, muted) go to the fallback
        watch.unreplayable.update(id(m) for m in mod.modules())
        return None
    new_out, probe, h = got
    saved[id(mod)] = (h, h._version, probe)
    return new_out


def _hooks(entries, watch: _Watch, saved: dict, gc_mod: nn.Module | None, gx_slot: dict) -> list:
    rules = {id(mod): rule for _, mod, rule in entries}

    def pre(mod, inp):
        watch.active[id(mod)] += 1
        watch.calls[id(mod)] += 1
        watch.muted += rules[id(mod)].replays

    def replaying_post(mod, inp, kwargs, out):
        return _replayed(mod, rules[id(mod)], inp, kwargs, out, watch, saved)

    def post(mod, inp, out):
        watch.active[id(mod)] -= 1
        if watch.calls[id(mod)] == 1 and inp and isinstance(inp[0], Tensor) and isinstance(out, Tensor):
            h = inp[0]
            # Tensor._version (private; no public accessor) tells whether h was later modified in place.
            saved[id(mod)] = (h.detach(), h._version, out)
            # Later in-place ops (ReLU(inplace=True), `out += x`) must not rewrite the z we differentiate.
            return out.clone()
        return None

    def gc_hook(mod, inp, out):
        if "e" in gx_slot:
            raise ValueError("the module named by gc_input ran twice in one forward: name a module called once")
        if not isinstance(out, Tensor) or not torch.is_floating_point(out):
            raise ValueError("the module named by gc_input must return one floating-point tensor (e.g. an embedding)")
        e = out if out.requires_grad else out.detach().requires_grad_(True)
        gx_slot["e"] = e
        return e.clone()

    handles = []
    for _, mod, rule in entries:
        hook = mod.register_forward_hook(replaying_post, with_kwargs=True) if rule.replays else None
        handles += [mod.register_forward_pre_hook(pre), hook or mod.register_forward_hook(post)]
    if gc_mod is not None:
        handles.append(gc_mod.register_forward_hook(gc_hook))
    return handles


def _backward(out: Tensor, inputs: list[Tensor], rows: Tensor) -> list[Tensor | None]:
    """∂rows/∂inputs, (m, *input) each: one batched VJP, or a plain one for a single row (the loss row
    of ``per_example_grad_norms``), which vmap would only slow down."""
    if not inputs or not out.requires_grad:
        return [None] * len(inputs)
    if rows.shape[0] > 1:
        return list(torch.autograd.grad(out, inputs, rows, is_grads_batched=True, allow_unused=True))
    grads = torch.autograd.grad(out, inputs, rows[0], allow_unused=True)
    return [None if g is None else g[None] for g in grads]


def _check_unmodified(ran, saved: dict) -> None:
    """Refuse a layer input that a later in-place op changed (its saved h would no longer be the input)."""
    for name, mod, _ in ran:
        h, version, _ = saved[id(mod)]
        if h._version != version:
            raise ValueError(
                f"the input of module '{name}' was modified in place later in the forward; "
                f"use out-of-place ops (inplace=False)"
            )


def run(
    model: nn.Module,
    x: Tensor,
    cot,
    plan: Plan,
    *,
    need_input: bool,
    need_layers: bool,
    gc_input: str | None = None,
) -> Pass:
    """The one pass (``signals.Pass``) by autograd, plus the generic fallback's layer."""
    entries = plan.entries if need_layers else []
    owner = {id(p): id(mod) for _, mod, rule in entries for p in rule.params()}
    bare = {id(p): n for n, p in plan.fallback.items()} if need_layers else {}
    watch, saved, gx_slot = _Watch(owner, bare, x.shape[0]), {}, {}
    gc_mod = _input_module(model, gc_input) if gc_input is not None and need_input else None
    handles = _hooks(entries, watch, saved, gc_mod, gx_slot)
    try:
        # The watch sees every torch call of the forward; it matters only for rule layers (GC alone skips it).
        with torch.enable_grad(), watch if entries or bare else nullcontext():
            xr = x.detach().requires_grad_(need_input and gc_mod is None)
            out = model(xr)
    finally:
        for hd in handles:
            hd.remove()
    check_out(out, x.shape[0])
    if need_layers:
        plan = plan.demote({i for i, n in watch.calls.items() if n > 1}, "called more than once")
        plan = plan.demote(watch.outside & {id(m) for _, m, _ in plan.entries}, "weight used outside its call")
        plan = plan.demote(watch.unreplayable, "input its rule cannot replay")
    added = watch.promoted()
    plan = plan.promote(set(added))
    ran = [(n, m, r) for n, m, r in (plan.entries if need_layers else []) if id(m) in saved]
    _check_unmodified(ran, saved)
    with torch.no_grad():
        rows = onehot_rows(out) if cot is None else cot(out.detach())
    x_in = gx_slot.get("e", xr) if need_input else None
    if need_input and x_in is None:
        raise ValueError(f"the module named by gc_input={gc_input!r} did not run in the forward")
    params = {id(p): p for _, p in model.named_parameters(remove_duplicate=False)}
    adds = [(bare[i], AddedParameterRule(bare[i], params[i]), r, probe) for i, (r, probe) in added.items()]
    inputs = [saved[id(m)][2] for _, m, _ in ran] + [a[3] for a in adds] + ([x_in] if need_input else [])
    grads = _backward(out, inputs, rows)
    m = rows.shape[0]
    with torch.no_grad():
        layers = []
        for (name, mod, rule), z, g in zip(ran, inputs, grads):
            g = torch.zeros((m, *z.shape), dtype=z.dtype, device=z.device) if g is None else g
            layers.append(LayerSignal(name, mod, rule, rule.prepare(saved[id(mod)][0]), g))
        for (name, rule, r, _), g in zip(adds, grads[len(ran) :]):
            g = r.new_zeros((m, *r.shape)) if g is None else g
            layers.append(LayerSignal(name, model, rule, rule.prepare(r), g))
        if need_layers and plan.fallback:
            rule = FallbackRule(model, plan.fallback)
            layers.append(LayerSignal("<fallback>", model, rule, rule.prepare(x.detach()), rows))
        gx = None
        if need_input:
            assert x_in is not None  # need_input: the pass kept the GC input
            gx = grads[-1] if grads[-1] is not None else x_in.new_zeros((m, *x_in.shape))
    unused = [p for _, mod, r in plan.entries if need_layers and id(mod) not in saved for p in r.params()]
    return Pass(out.detach(), layers, gx, unused, plan.fallback_layers if need_layers else ())

"""The one pass: one forward that keeps every parametrized layer's input, and one batched
backward of ``m`` cotangent rows to every layer output and to the input.

Three exact implementations, same result:

- ``chain.py``: plain ``nn.Sequential`` stacks of Linear and element-wise activations
  (the paper's MLPs) run a hand-written backward with one ``(m·b, n) @ W`` matmul per layer;
  it is ~2.5x faster than vmap-over-autograd on CPU, which matters for the per-step budget.
- conv / residual nets (``tape.py``): the forward is recorded as a tape of torch calls and
  a hand-written backward runs all rows folded into the batch dimension;
- anything the tape does not cover (``tape.NotTape``): forward hooks save ``h_l`` and ``z_l``, then ONE
  ``torch.autograd.grad(..., is_grads_batched=True)`` call returns ``∂rows/∂z_l`` and
  ``∂rows/∂x`` for all rows at once.

The model is assumed to treat examples independently (no cross-example op) — the checks
below refuse the known offenders (BatchNorm in train mode or without running stats).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from gclab.collect.metrics import chain, generic, tape
from gclab.collect.metrics.fallback import warn_once
from gclab.collect.metrics.rules import Rule, rule_for
from gclab.collect.metrics.signals import Cotangents, Pass
from gclab.collect.metrics.workspace import NoWorkspace, workspace

SUPPORTED = "Linear, Conv2d, eval-mode BatchNorm (with running stats)"
# The public BatchNorm classes (all subclass torch's private _BatchNorm): in train mode they mix the batch.
BATCHNORMS = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.LazyBatchNorm1d,
    nn.LazyBatchNorm2d,
    nn.LazyBatchNorm3d,
)


@dataclass
class Plan:
    """How the engine covers a model's trainable parameters (decided here, once, for every path):
    ``entries`` (name, module, rule) of the layers with a rule; ``fallback`` (name -> Parameter)
    the parameters the exact generic fallback covers (``fallback.py``), and ``fallback_layers``
    the modules they belong to, for the warning and the run record."""

    entries: list[tuple[str, nn.Module, Rule]] = field(default_factory=list)
    fallback: dict[str, nn.Parameter] = field(default_factory=dict)
    fallback_layers: tuple[str, ...] = ()
    # id(module) -> its trainable (full name, Parameter), for layers the pass demotes to the fallback.
    params_of: dict[int, list[tuple[str, nn.Parameter]]] = field(default_factory=dict)

    def demote(self, module_ids: set[int], why: str) -> Plan:
        """The plan with the layers in ``module_ids`` moved to the fallback (a module called twice,
        a parameter used outside its module's call: facts only the forward shows)."""
        if not module_ids:
            return self
        keep = [e for e in self.entries if id(e[1]) not in module_ids]
        moved = [e for e in self.entries if id(e[1]) in module_ids]
        fb = dict(self.fallback)
        for _, mod, _ in moved:
            fb.update(dict(self.params_of[id(mod)]))
        labels = self.fallback_layers + tuple(f"{_label(n, m)} ({why})" for n, m, _ in moved)
        return Plan(keep, fb, labels, self.params_of)


def _label(mname: str, mod: nn.Module) -> str:
    return f"'{mname or '<root>'}' ({type(mod).__name__})"


def _check_batchnorm(mod: nn.Module, label: str) -> None:
    """Train-mode BatchNorm mixes the examples of a batch: the one thing refused (undefined, not hard)."""
    if not isinstance(mod, BATCHNORMS):
        return
    if mod.training:
        raise ValueError(
            f"module {label} is BatchNorm in train mode: it mixes the examples of a "
            f"batch, so per-example gradients are undefined; call model.eval() first"
        )
    if mod.running_mean is None:
        raise ValueError(
            f"module {label} is BatchNorm without running stats: it normalizes with "
            f"batch statistics even in eval mode; per-example gradients are undefined"
        )


def mixes_batch(model: nn.Module) -> bool:
    """True if the model holds BatchNorm layers, whose train-mode forward mixes the examples: the
    metrics then run in eval mode and the training gradient needs its own backward (the recorder)."""
    return any(isinstance(m, BATCHNORMS) for m in model.modules())


def check_model(model: nn.Module, *, need_params: bool = True) -> Plan:
    """The one place that decides how a model is covered: refuse what is undefined (train-mode
    BatchNorm), give every module with trainable parameters its rule, and send the rest to the
    exact generic fallback: modules without a rule or with parameters the rule does not know, and
    every module holding a Parameter another module also holds (tied weights)."""
    named: list[tuple[str, nn.Module, list[tuple[str, nn.Parameter]]]] = []
    holders: dict[int, set[int]] = {}  # id(param) -> ids of the modules holding it
    for mname, mod in model.named_modules(remove_duplicate=False):
        _check_batchnorm(mod, _label(mname, mod))
        if not need_params:
            continue
        # named_parameters(recurse=False), read directly: 6x cheaper per module.
        direct = [(n, p) for n, p in mod._parameters.items() if p is not None]
        for _, p in direct:
            holders.setdefault(id(p), set()).add(id(mod))
        trainable = [(f"{mname}.{n}" if mname else n, p) for n, p in direct if p.requires_grad]
        if trainable:
            named.append((mname, mod, trainable))
    plan, seen, first_name = Plan(), set(), {}
    for mname, mod, trainable in named:
        if id(mod) in seen:  # the same module under two names: an alias
            continue
        seen.add(id(mod))
        own = [(n, p) for n, p in trainable if id(p) not in first_name]
        first_name.update({id(p): n for n, p in own})
        plan.params_of[id(mod)] = own
        rule_cls = rule_for(mod)
        shared = any(len(holders[id(p)]) > 1 for _, p in trainable)
        known = rule_cls is not None and all(n in rule_cls.param_names for n in mod._parameters)
        if rule_cls is not None and known and not shared:
            plan.entries.append((mname, mod, rule_cls(mod)))
            continue
        plan.fallback.update(own)
        why = "shared parameter" if shared else "no rule" if rule_cls is None else "unexpected parameters"
        plan.fallback_layers += (f"{_label(mname, mod)} ({why})",)
    return plan


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
    if gc_input is None and not plan.fallback and torch.is_floating_point(x):
        with torch.no_grad():
            spec = chain.parse(model)
            if spec is not None:
                res = chain.run(spec, x, cot, plan.entries, need_input=need_input, need_layers=need_layers, ws=ws)
                if res is not None:
                    return _remember(model, res)
            if spec is None:
                try:
                    res = tape.run(model, x, cot, plan.entries, need_input=need_input, need_layers=need_layers, ws=ws)
                    return _remember(model, res)
                except tape.NotTape:
                    pass
    with torch.inference_mode(False):  # the autograd path needs autograd, also under a caller's inference mode
        res = generic.run(model, x, cot, plan, need_input=need_input, need_layers=need_layers, gc_input=gc_input)
    if need_layers:
        warn_once(model, res.fallback)
    return _remember(model, res)


_LAST_FALLBACK: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _remember(model: nn.Module, p: Pass) -> Pass:
    if p.layers or p.fallback:
        _LAST_FALLBACK[model] = p.fallback
    return p


def fallback_layers(model: nn.Module) -> tuple[str, ...]:
    """The layers the last pass over ``model`` (with per-layer metrics) covered by the generic
    fallback, as "'name' (Type) (why)" labels; () when every layer had a rule. The recorder stores them."""
    return _LAST_FALLBACK.get(model, ())

"""Which models the engine supports, and how, decided in one place (docs/METRICS.md, "Which
models"): every trainable parameter gets its layer's rule or the exact generic fallback; only what
is undefined (train-mode BatchNorm, which mixes the examples of a batch) is refused.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from gclab.collect.metrics import chain
from gclab.collect.metrics.registry import rule_for
from gclab.collect.metrics.rules import Rule

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
    # id(module) -> its label in fallback_layers, for the modules check_model sent there
    label_of: dict[int, str] = field(default_factory=dict)

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
        return Plan(keep, fb, labels, self.params_of, self.label_of)

    def promote(self, param_ids: set[int]) -> Plan:
        """The plan with the parameters in ``param_ids`` taken off the fallback (the forward showed a
        form with a rule: a bare parameter added to a batch-first tensor, ``added_parameter.py``);
        a module none of whose parameters stay there leaves ``fallback_layers``."""
        if not param_ids:
            return self
        fb = {n: p for n, p in self.fallback.items() if id(p) not in param_ids}
        kept = {id(p) for p in fb.values()}
        gone = {lab for i, lab in self.label_of.items() if not any(id(p) in kept for _, p in self.params_of[i])}
        labels = tuple(lab for lab in self.fallback_layers if lab not in gone)
        return Plan(self.entries, fb, labels, self.params_of, self.label_of)


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


def _why_fallback(rule_cls: type[Rule] | None, mod: nn.Module, shared: bool) -> str | None:
    """Why a module with trainable parameters goes to the fallback, or None if its rule takes it."""
    if shared:
        return "shared parameter"
    if rule_cls is None:
        return "no rule"
    if not all(n in rule_cls.param_names for n in mod._parameters):
        return "unexpected parameters"
    return None if rule_cls.supports(mod) else "options its rule does not take"


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
        # evidence: make bench peers/resnet18_quarter (most modules; docs/METRICS.md "Bench catalogue")
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
        why = _why_fallback(rule_cls, mod, shared)
        if rule_cls is not None and why is None:
            plan.entries.append((mname, mod, rule_cls(mod)))
            continue
        plan.fallback.update(own)
        plan.label_of[id(mod)] = f"{_label(mname, mod)} ({why})"
        plan.fallback_layers += (plan.label_of[id(mod)],)
    return plan


# The three ways the one pass back-propagates its m rows (docs/METRICS.md, "Which method"): a
# hand-written backward with the rows folded into the batch (chain: Linear stacks; tape: conv /
# residual nets), or one batched VJP through autograd (vmap over the backward, any model).
CHAIN, TAPE, BATCHED_VJP = "chain", "tape", "batched_vjp"

# model -> the (input shape, dtype, mode, need_layers) keys on which its tape was refused: a refusal is
# structural (an op the tape lacks), so the pass goes straight to the batched VJP next time. A stale
# entry (the model changed) only costs speed: the batched VJP is exact for every model.
_TAPE_REFUSED: weakref.WeakKeyDictionary[nn.Module, set[tuple]] = weakref.WeakKeyDictionary()


def _tape_key(model: nn.Module, x: Tensor, need_layers: bool) -> tuple:
    return (tuple(x.shape[1:]), x.dtype, model.training, need_layers)


def pass_method(
    model: nn.Module, x: Tensor, plan: Plan, *, gc_input: str | None, need_layers: bool
) -> tuple[str, chain.Chain | None]:
    """The cost model's choice of method for this pass, and the parsed chain when it is ``CHAIN``.

    All three cost the same multiply-adds (one forward and m backward-data rows, plus the rules'
    products); they differ in how the kernels run. vmap runs each conv backward under a batching
    rule several times slower on CPU than the same kernel on a folded (m·b) batch, and a chain or
    tape backward builds no autograd graph: so chain where the model is a plain Linear stack, the
    tape where it records (every op in the tape's set), else the batched VJP. Where the tape is
    refused nothing is gained by trying it again. ``make bench`` checks the choice against the
    naive batched VJP and per-logit baselines on every catalogue net (row ``gc_method``)."""
    if gc_input is not None or plan.fallback or not torch.is_floating_point(x):
        return BATCHED_VJP, None
    spec = chain.parse(model)
    if spec is not None:
        return CHAIN, spec
    if _tape_key(model, x, need_layers) in _TAPE_REFUSED.get(model, ()):
        return BATCHED_VJP, None
    return TAPE, None


def note_tape_refused(model: nn.Module, x: Tensor, *, need_layers: bool) -> None:
    """Remember that the tape refused this model on this input (``pass_method`` then skips it)."""
    _TAPE_REFUSED.setdefault(model, set()).add(_tape_key(model, x, need_layers))

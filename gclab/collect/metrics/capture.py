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

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from gclab.collect.metrics import chain, tape
from gclab.collect.metrics.rules import Rule, rule_for
from gclab.collect.metrics.signals import Cotangents, LayerSignal, Pass, check_out, onehot_rows
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


# C901 kept: one walk over the modules, one refusal per unsupported case with its own message; split in the
# engine rewrite (another branch)
def check_model(model: nn.Module, *, need_params: bool = True) -> list[tuple[str, nn.Module, Rule]]:  # noqa: C901
    """Refuse models whose per-example gradients we cannot compute exactly; return the
    (name, module, rule) of every module holding trainable parameters."""
    owners: dict[int, tuple[int, str]] = {}  # id(param) -> (id(module), name)
    entries, seen = [], set()
    for mname, mod in model.named_modules(remove_duplicate=False):
        label = f"'{mname or '<root>'}' ({type(mod).__name__})"
        if isinstance(mod, BATCHNORMS):
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
        if not need_params:
            continue
        # is_parametrized costs an AttributeError per plain module; its ModuleDict is a child named so.
        if "parametrizations" in mod._modules and parametrize.is_parametrized(mod):
            raise TypeError(
                f"module {label} is parametrized (torch.nn.utils.parametrize): its weight is a "
                f"function of other parameters; supported: {SUPPORTED} with plain parameters"
            )
        # named_parameters(recurse=False), read directly: 6x cheaper per module.
        direct = [(n, p) for n, p in mod._parameters.items() if p is not None]
        for pname, p in direct:
            full = f"{mname}.{pname}" if mname else pname
            # The same module under two names is fine (an alias); two modules holding one
            # Parameter is not. A module *called* twice is caught when it runs.
            if id(p) in owners and owners[id(p)][0] != id(mod):
                raise ValueError(
                    f"parameter sharing: '{full}' is the same Parameter as '{owners[id(p)][1]}'; "
                    f"per-layer gradient rules need each parameter in exactly one layer"
                )
            owners.setdefault(id(p), (id(mod), full))
        trainable = [(n, p) for n, p in direct if p.requires_grad]
        if not trainable or id(mod) in seen:
            continue
        seen.add(id(mod))
        rule_cls = rule_for(mod)
        if rule_cls is None:
            raise TypeError(
                f"module {label} has trainable parameters but no per-example gradient rule; "
                f"supported: {SUPPORTED} (not LayerNorm, Embedding, RNNs, ...)"
            )
        extra = [n for n, _ in direct if n not in rule_cls.param_names]
        if extra:
            raise TypeError(
                f"module {label} has unexpected parameters {extra} (weight-norm / spectral-norm "
                f"hooks?); supported: {SUPPORTED} with plain 'weight'/'bias'"
            )
        entries.append((mname, mod, rule_cls(mod)))
    return entries


def run_pass(
    model: nn.Module,
    x: Tensor,
    cot: Cotangents = None,
    *,
    need_input: bool = True,
    need_layers: bool = True,
    reuse_buffers: bool = False,
) -> Pass:
    """Forward once, backward all cotangent rows once. ``cot=None``: the k one-hot rows.

    The returned tensors belong to the caller. ``reuse_buffers=True`` (for callers that reduce
    the pass before returning, e.g. ``step_terms``) lets the fast paths keep their large tensors
    in a per-thread workspace instead: the next such call in the thread overwrites them."""
    if not torch.is_floating_point(x):
        raise TypeError(f"x must be a floating-point tensor (inputs are differentiated), got {x.dtype}")
    entries = check_model(model, need_params=need_layers)
    ws = workspace() if reuse_buffers else NoWorkspace()
    with torch.no_grad():
        spec = chain.parse(model)
        if spec is not None:
            res = chain.run(spec, x, cot, entries, need_input=need_input, need_layers=need_layers, ws=ws)
            if res is not None:
                return res
        if spec is None:
            try:
                return tape.run(model, x, cot, entries, need_input=need_input, need_layers=need_layers, ws=ws)
            except tape.NotTape:
                pass
    with torch.inference_mode(False):  # the autograd path needs autograd, also under a caller's inference mode
        return _generic_pass(model, x, cot, entries, need_input, need_layers)


# C901 kept: the hooks and the backward share one `saved` dict, so they read best in one closure; split in
# the engine rewrite (another branch)
def _generic_pass(model, x, cot, entries, need_input, need_layers) -> Pass:  # noqa: C901
    saved: dict[int, tuple] = {}
    handles = []

    def make_hook(name):
        def hook(mod, inp, out):
            if id(mod) in saved:
                raise ValueError(
                    f"module '{name}' ({type(mod).__name__}) ran twice in one forward: shared "
                    f"weights across calls are not supported by the per-layer rules"
                )
            h = inp[0]
            # Tensor._version (private; no public accessor) tells whether h was later modified in place.
            saved[id(mod)] = (h.detach(), h._version, out)
            # Later in-place ops (ReLU(inplace=True), `out += x`) must not rewrite the z we differentiate.
            return out.clone()

        return hook

    if need_layers:
        handles = [mod.register_forward_hook(make_hook(name)) for name, mod, _ in entries]
    try:
        with torch.enable_grad():
            xr = x.detach().requires_grad_(need_input)
            out = model(xr)
    finally:
        for hd in handles:
            hd.remove()
    check_out(out, x.shape[0])
    ran = [(n, m, r) for n, m, r in entries if id(m) in saved]
    for name, mod, _ in ran:
        h, version, _ = saved[id(mod)]
        if h._version != version:
            raise ValueError(
                f"the input of module '{name}' was modified in place later in the forward; "
                f"use out-of-place ops (inplace=False)"
            )
    with torch.no_grad():
        rows = onehot_rows(out) if cot is None else cot(out.detach())
    inputs = [saved[id(m)][2] for _, m, _ in ran] + ([xr] if need_input else [])
    if inputs and out.requires_grad:
        grads = torch.autograd.grad(out, inputs, rows, is_grads_batched=True, allow_unused=True)
    else:
        grads = [None] * len(inputs)
    m = rows.shape[0]
    with torch.no_grad():
        layers = []
        for (name, mod, rule), z, g in zip(ran, inputs, grads):
            g = torch.zeros((m, *z.shape), dtype=z.dtype, device=z.device) if g is None else g
            layers.append(LayerSignal(name, mod, rule, rule.prepare(saved[id(mod)][0]), g))
        gx = None
        if need_input:
            gx = grads[-1] if grads[-1] is not None else x.new_zeros((m, *x.shape))
    unused = [p for n, mod, r in entries if id(mod) not in saved for p in r.params()]
    return Pass(out.detach(), layers, gx, unused)

"""The metric engine on every net of the bench catalogue (gclab/bench/nets.py) beside the naive
ways to get GC and the tools a researcher would pick for per-example gradient norms: Opacus ghost
norms, BackPACK ``BatchL2Grad`` and ``torch.func`` (docs/METRICS.md, "Measuring", "Bench catalogue").

Per net, in one process, 2 torch threads, float32, interleaved rounds (gclab/bench/timing.py),
median seconds per call, every ratio against the plain step of the same rounds:

- plain: zero_grad, forward, cross-entropy, backward, SGD step (the unit of every ratio);
- suite: ``step_metrics(set_grad=True)`` + SGD step (all metrics and the gradient, one pass);
- gc: exact ``geometric_complexity`` alone; naive_grad_per_logit, naive_batched_vjp: the same GC
  the obvious ways (gclab/bench/naive.py);
- norms: ``per_example_grad_norms`` alone; opacus_ghost, backpack_batch_l2, torch_func: the same
  norms by each peer.

Every method's numbers are checked before it is timed: GC against one ``autograd.grad`` per logit,
norms against ours (``torch.func`` where the engine refuses the net). A method that refuses the net
(the engine's TypeError/ValueError, a peer's exception) is recorded under ``refused`` with its
one-line reason and not timed; a method whose numbers differ is recorded under ``wrong`` and not
timed. The targets (gclab/bench/targets.py) are written per row as met / not met / not checked.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from gclab.bench.flops import flop_floor
from gclab.bench.naive import NAIVE, gc_per_logit
from gclab.bench.nets import NETS, BenchNet
from gclab.bench.targets import check
from gclab.bench.timing import block_sizes, interleaved, load_probe, medians, round_ratio_quartiles
from gclab.collect.metrics import geometric_complexity, per_example_grad_norms, run_pass, step_metrics
from gclab.collect.metrics.plan import BATCHED_VJP
from gclab.collect.models import ResNet18
from gclab.store.errors import one_line

RTOL = 1e-3  # float32 agreement of a method with the reference before it is timed
FULL = {"seconds_per_block": 0.3}  # rounds per net: the catalogue's BenchNet.rounds
QUICK = {"rounds": 3, "seconds_per_block": 0.05}  # `gclab bench --quick`: checks the whole path, figures are rough


def _traceable(model: nn.Module) -> nn.Module:
    """The same function as an fx-traceable Sequential (ResNet18.forward branches on x.dim())."""
    if isinstance(model, ResNet18):
        return nn.Sequential(model.stem, model.blocks, model.pool, nn.Flatten(), model.fc)
    return model


def _opacus_view(model: nn.Module) -> nn.Module:
    """A copy an Opacus user would train: nn.LSTM swapped for Opacus's DPLSTM (same weights, same function)."""
    from opacus.layers import DPLSTM

    model = copy.deepcopy(_traceable(model))
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.LSTM):
            dp = DPLSTM(module.input_size, module.hidden_size, module.num_layers, batch_first=module.batch_first)
            dp.load_state_dict(module.state_dict())
            parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
            setattr(parent, name.rpartition(".")[2], dp)
    return model


def _opacus(model, x, y):
    from opacus.grad_sample import GradSampleModuleFastGradientClipping

    # Opacus hooks act in train mode only; the nets it accepts have no BatchNorm, so the function is the same.
    gsm = GradSampleModuleFastGradientClipping(
        _opacus_view(model).train(), max_grad_norm=1.0, use_ghost_clipping=True, loss_reduction="sum"
    )

    def norms():
        gsm.zero_grad()
        F.cross_entropy(gsm(x), y, reduction="sum").backward()
        return gsm.get_norm_sample().square()

    return norms


def _backpack(model, x, y):
    # BackPACK comes with the bench extra only (`make bench` installs it); without it this peer is refused.
    from backpack import backpack, extend  # pyright: ignore[reportMissingImports]
    from backpack.extensions import BatchL2Grad  # pyright: ignore[reportMissingImports]

    net = extend(copy.deepcopy(_traceable(model)).eval(), use_converter=isinstance(model, ResNet18))
    lossf = extend(nn.CrossEntropyLoss(reduction="sum"))

    def norms():
        net.zero_grad()
        with backpack(BatchL2Grad()):
            lossf(net(x), y).backward()
        return sum(p.batch_l2 for p in net.parameters())

    return norms


def _torch_func(model, x, y):
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b for n, b in model.named_buffers()}

    def loss(p, xi, yi):
        return F.cross_entropy(functional_call(model, {**p, **buffers}, (xi[None],)), yi[None])

    per_example = vmap(grad(loss), in_dims=(None, 0, 0))

    def norms():
        g = per_example(params, x, y)
        return sum(t.reshape(x.shape[0], -1).square().sum(1) for t in g.values())

    return norms


PEERS = {"opacus_ghost": _opacus, "backpack_batch_l2": _backpack, "torch_func": _torch_func}


def _max_rel_diff(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float((a.detach() - ref).abs().max() / ref.abs().max().clamp_min(1e-30))


def _try(fn):
    """(value, None) or (None, {"refused" | "error": one-line reason}); the engine refuses with TypeError/ValueError."""
    try:
        return fn(), None
    except (TypeError, ValueError) as exc:
        return None, {"refused": one_line(exc, with_type=True)}
    except Exception as exc:  # noqa: BLE001 - a method failing on a net is a result of the bench, not its end
        return None, {"error": one_line(exc, with_type=True)}


def _gc_methods(model, x, admit, refused: dict) -> None:
    """Our exact GC and the naive baselines, each admitted against the per-logit reference or refused."""
    gc_ref = gc_per_logit(model, x)
    candidates = {"gc": lambda: geometric_complexity(model, x)}
    candidates.update({name: (lambda naive=naive: naive(model, x)) for name, naive in NAIVE.items()})
    for name, fn in candidates.items():
        value, why = _try(fn)
        refused.update({name: why} if why else {})
        if not why:
            admit(name, fn, value, gc_ref)


def _norm_methods(model, x, y, fns: dict, admit, refused: dict, diffs: dict) -> str | None:
    """Our per-example norms and the peers', checked against ours (or torch.func's where ours refuse);
    returns the name of the reference used (None when neither runs)."""
    norms, why = _try(lambda: per_example_grad_norms(model, x, y))
    refused.update({"norms": why} if why else {})
    peer_fns = {}
    for name, make in PEERS.items():
        fn, why = _try(lambda make=make: make(model, x, y))
        value, why = (None, why) if why else _try(fn)
        if why:
            refused[name] = why
        else:
            peer_fns[name] = (fn, value)
    norms_ref, norms_ref_name = (norms, "norms") if norms is not None else (None, None)
    if norms_ref is None and "torch_func" in peer_fns:
        norms_ref, norms_ref_name = peer_fns["torch_func"][1], "torch_func"
    if norms is not None:
        fns["norms"] = lambda: per_example_grad_norms(model, x, y)
    for name, (fn, value) in peer_fns.items():
        if norms_ref is None or name == norms_ref_name:
            fns[name] = fn
        else:
            admit(name, fn, value, norms_ref)
    if norms is not None and "torch_func" in peer_fns:
        diffs["norms"] = _max_rel_diff(norms, peer_fns["torch_func"][1])
    return norms_ref_name


def gc_method_check(model, x, med: dict[str, float]) -> dict:
    """The cost model's method for GC alone (plan.pass_method) against measurement: the engine's GC time
    beside the two naive baselines (the batched VJP is the engine's other method); ``held``: the chosen
    method was no slower than either."""
    chosen = run_pass(model, x, need_layers=False).method
    ms = {name: round(1e3 * med[name], 3) for name in ("gc", *NAIVE) if name in med}
    held = None if "gc" not in med or len(ms) < 2 else all(med["gc"] <= med[n] for n in NAIVE if n in med)
    # The batched VJP is the naive baseline's own computation: there `held` only says which the load favoured.
    same = "naive_batched_vjp" if chosen == BATCHED_VJP else None
    return {"chosen": chosen, "ms": ms, "held": held, "same_computation_as": same}


def bench_net(net: BenchNet, *, rounds: int, seconds_per_block: float) -> dict:
    """One catalogue row: checks, interleaved timings, ratios to the plain step, targets met / not met."""
    model = net.model()
    x, y = net.data()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: every call sees the same weights

    def plain():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    def suite():
        step_metrics(model, x, y, set_grad=True)
        opt.step()

    fns, refused, wrong, diffs = {"plain": plain}, {}, {}, {}

    def admit(name, fn, value, ref):
        diff = _max_rel_diff(value, ref)
        diffs[name] = diff
        if diff > RTOL:
            wrong[name] = f"max relative difference {diff:.2e} from the reference > {RTOL:g}; not timed"
        else:
            fns[name] = fn

    _, why = _try(suite)
    refused.update({"suite": why} if why else {})
    if not why:
        fns["suite"] = suite
    _gc_methods(model, x, admit, refused)
    norms_ref_name = _norm_methods(model, x, y, fns, admit, refused, diffs)

    floor, why = _try(lambda: flop_floor(model, x, y))
    inner = block_sizes(fns, seconds_per_block)
    probe = load_probe()
    times = interleaved(fns, rounds=rounds, inner=inner)
    load = probe()
    med, med_cpu = medians(times), medians(times, "cpu")
    naive, peers = [n for n in NAIVE if n in med], [p for p in PEERS if p in med]
    return {
        "description": net.description,
        "family": net.family,
        "batch": net.batch,
        "input": list(net.input_shape),
        "k": net.k,
        "dtype": "float32",
        "rounds": rounds,
        "n_params": sum(p.numel() for p in model.parameters()),
        "ms": {key: round(1e3 * v, 3) for key, v in med.items()},
        "x_plain_step": {key: round(v / med["plain"], 3) for key, v in med.items()},
        "x_plain_step_round_quartiles": round_ratio_quartiles(times, "plain"),
        "cpu_ms": {key: round(1e3 * v, 3) for key, v in med_cpu.items()},
        "x_plain_step_cpu": {key: round(v / med_cpu["plain"], 3) for key, v in med_cpu.items()},
        "checks": {
            "gc_reference": "naive_grad_per_logit",
            "norms_reference": norms_ref_name,
            "max_rel_diff": {k: float(f"{v:.3g}") for k, v in diffs.items()},
        },
        "refused": refused,
        "wrong": wrong,
        "flop_floor": floor if floor is not None else why,
        "gc_method": gc_method_check(model, x, med) if "gc" in med else None,
        "load": load,
        "targets": check(family=net.family, med=med, floor=floor, naive=naive, peers=peers),
    }


def run(*, quick: bool = False, nets: tuple[str, ...] | None = None) -> dict:
    """Every catalogue net (or ``nets``), 2 torch threads; ``quick``: 3 short rounds per net."""
    names = tuple(nets or NETS)
    unknown = [n for n in names if n not in NETS]
    if unknown:
        raise ValueError(f"unknown bench nets {unknown}; the catalogue has {', '.join(NETS)}")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        rows = {}
        for name in names:
            settings = QUICK if quick else {"rounds": NETS[name].rounds, **FULL}
            rows[name] = bench_net(NETS[name], **settings)
        met = {n: {t: r["targets"][t]["met"] for t in r["targets"]} for n, r in rows.items()}
        return {
            "nets": rows,
            "targets_met": met,
            "settings": {
                "torch": torch.__version__,
                "torch_threads": 2,
                "quick": quick,
                "seconds_per_block": (QUICK if quick else FULL)["seconds_per_block"],
                "method": "one process, interleaved rounds, median per call (gclab/bench/timing.py)",
            },
        }
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(nets=tuple(sys.argv[1:]) or None), indent=2))

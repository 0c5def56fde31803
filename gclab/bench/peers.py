"""The metric engine on MLP, CNN and residual nets beside the tools a researcher would pick:
Opacus ghost norms, BackPACK ``BatchL2Grad`` and ``torch.func`` per-example gradients.

Per net, in one process, 2 torch threads, float32, 21 interleaved rounds (every method runs one
block per round, so load from other processes hits all alike), median seconds per call; the
quartiles of the per-round ratios show how much a ratio moved between rounds:

- plain: zero_grad, forward, cross-entropy, backward, SGD step (the unit of every ratio);
- suite: ``step_metrics(set_grad=True)`` + SGD step (all metrics and the gradient, one pass);
- gc: exact ``geometric_complexity`` alone;
- norms: ``per_example_grad_norms`` alone (per-example loss-gradient norms, what peers give);
- opacus_ghost, backpack_batch_l2, torch_func: the same norms by each peer.

A peer that is not installed or refuses a net is reported as such. Every peer's norms are
checked against ours before timing. Wall-time ratios are the targets; own-CPU-time ratios are
reported beside them (less sensitive to waiting for a loaded core). ``load`` records the load average and the CPU
seconds
other processes used during the timed rounds (from /proc/stat), so noisy runs show.
Targets (docs/METRICS.md): suite ≤ 5x (CNN, residual), ≤ 6x (ResNet-18 ¼), ≤ 3x (MLP); gc ≤ 4x
(CNN, residual); norms no slower than BackPACK.
"""

from __future__ import annotations

import copy
import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from gclab.collect.metrics import geometric_complexity, per_example_grad_norms, step_metrics
from gclab.collect.models import build_model

# name: (builder, input shape, batch, suite target, gc target)
NETS = {
    "mlp": (lambda: build_model("mlp", input_shape=(40,), n_out=10, width=256, depth=2), (40,), 128, 3.0, None),
    "cnn": (
        lambda: build_model("cnn", input_shape=(3, 16, 16), n_out=10, width=16, depth=2),
        (3, 16, 16),
        64,
        5.0,
        4.0,
    ),
    "residual": (
        lambda: build_model("resnet18", input_shape=(3, 16, 16), n_out=10, width=4),
        (3, 16, 16),
        64,
        5.0,
        4.0,
    ),
    "resnet18_quarter": (
        lambda: build_model("resnet18", input_shape=(3, 32, 32), n_out=10, width=16),
        (3, 32, 32),
        32,
        6.0,
        None,
    ),
}


def _traceable(model: nn.Module) -> nn.Module:
    """The same function as an fx-traceable Sequential (ResNet18.forward branches on x.dim())."""
    if hasattr(model, "blocks"):
        return nn.Sequential(model.stem, model.blocks, model.pool, nn.Flatten(), model.fc)
    return model


def _opacus(model, x, y):
    from opacus.grad_sample import GradSampleModuleFastGradientClipping

    # Opacus hooks act in train mode only; the nets it accepts have no BatchNorm, so the function is the same.
    gsm = GradSampleModuleFastGradientClipping(
        copy.deepcopy(_traceable(model)).train(), max_grad_norm=1.0, use_ghost_clipping=True, loss_reduction="sum"
    )

    def norms():
        gsm.zero_grad()
        F.cross_entropy(gsm(x), y, reduction="sum").backward()
        return gsm.get_norm_sample().square()

    return norms


def _backpack(model, x, y):
    from backpack import backpack, extend
    from backpack.extensions import BatchL2Grad

    net = extend(copy.deepcopy(_traceable(model)).eval(), use_converter=hasattr(model, "blocks"))
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


def _busy_jiffies() -> int | None:
    try:
        cpu = open("/proc/stat").readline().split()[1:]
    except OSError:
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in cpu[:8])
    return user + nice + system + irq + softirq + steal


def _load_probe():
    """Callable returning {load averages, CPU seconds used by OTHER processes} since its creation."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    j0, own0, w0 = _busy_jiffies(), time.process_time(), time.perf_counter()

    def read() -> dict:
        j1, own1, w1 = _busy_jiffies(), time.process_time(), time.perf_counter()
        other = None if j0 is None or j1 is None else max((j1 - j0) / tick - (own1 - own0), 0.0)
        return {
            "load_average_1m_5m_15m": list(os.getloadavg()),
            "wall_s": round(w1 - w0, 2),
            "own_cpu_s": round(own1 - own0, 2),
            "other_processes_cpu_s": None if other is None else round(other, 2),
            "other_processes_cpu_share_of_machine": None
            if other is None
            else round(other / ((w1 - w0) * (os.cpu_count() or 1)), 3),
        }

    return read


def _check_peers(model, x, y, fns: dict) -> dict:
    """Each peer's per-example norms against ours: {peer: agreement or error}; a peer that agrees
    (max relative difference <= 1e-3) is added to `fns`, to be timed."""
    ours = per_example_grad_norms(model, x, y)
    peers = {}
    for peer, make in PEERS.items():
        try:
            fn = make(model, x, y)
            theirs = fn()
            err = float((theirs - ours).abs().max() / ours.abs().max())
            peers[peer] = {"max_rel_diff_vs_ours": err}
            if err > 1e-3:
                peers[peer]["error"] = "norms differ from ours; not timed"
            else:
                fns[peer] = fn
        except Exception as exc:  # noqa: BLE001 - a peer refusing a net is a result, not a failure
            peers[peer] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"}
    return peers


def bench_net(name: str, rounds: int, seconds_per_block: float) -> dict:
    build, shape, b, suite_target, gc_target = NETS[name]
    torch.manual_seed(0)
    model = build().eval()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(b, *shape, generator=g), torch.randint(0, 10, (b,), generator=g)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: every call sees the same weights

    def plain():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    def suite():
        step_metrics(model, x, y, set_grad=True)
        opt.step()

    fns = {
        "plain": plain,
        "suite": suite,
        "gc": lambda: geometric_complexity(model, x),
        "norms": lambda: per_example_grad_norms(model, x, y),
    }
    peers = _check_peers(model, x, y, fns)
    # Warm up and size each block to about `seconds_per_block`.
    inner = {}
    for key, fn in fns.items():
        fn()
        t = time.perf_counter()
        fn()
        inner[key] = max(1, round(seconds_per_block / max(time.perf_counter() - t, 1e-6)))
    times = {key: [] for key in fns}
    cpu = {key: [] for key in fns}  # own CPU seconds: less hit by waiting for the cores than wall time
    probe = _load_probe()
    for _ in range(rounds):
        for key, fn in fns.items():
            t, c = time.perf_counter(), time.process_time()
            for _ in range(inner[key]):
                fn()
            times[key].append((time.perf_counter() - t) / inner[key])
            cpu[key].append((time.process_time() - c) / inner[key])
    load = probe()
    med = {key: statistics.median(v) for key, v in times.items()}
    med_cpu = {key: statistics.median(v) for key, v in cpu.items()}
    ratio = {key: med[key] / med["plain"] for key in med}
    # Spread: quartiles of the per-round ratios (each round times every method once, back to back).
    paired = {key: [t / p for t, p in zip(v, times["plain"])] for key, v in times.items()}
    quartiles = {key: [round(q, 3) for q in statistics.quantiles(v, n=4)[::2]] for key, v in paired.items()}
    row = {
        "batch": b,
        "input": list(shape),
        "k": 10,
        "dtype": "float32",
        "rounds": rounds,
        "n_params": sum(p.numel() for p in model.parameters()),
        "ms": {key: round(1e3 * v, 3) for key, v in med.items()},
        "x_plain_step": {key: round(v, 3) for key, v in ratio.items()},
        "x_plain_step_round_quartiles": quartiles,
        "cpu_ms": {key: round(1e3 * v, 3) for key, v in med_cpu.items()},
        "x_plain_step_cpu": {key: round(v / med_cpu["plain"], 3) for key, v in med_cpu.items()},
        "peers": peers,
        "load": load,
        "targets": {"suite_max": suite_target, "gc_max": gc_target, "norms_max_vs_backpack": 1.0},
    }
    ok = {"suite": ratio["suite"] <= suite_target}
    if gc_target is not None:
        ok["gc"] = ratio["gc"] <= gc_target
    if "backpack_batch_l2" in med:
        ok["norms_vs_backpack"] = med["norms"] <= med["backpack_batch_l2"]
    row["pass"] = ok
    return row


def run(*, rounds: int = 21, seconds_per_block: float = 0.3, nets=tuple(NETS)) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        out = {}
        for name in nets:
            out[name] = bench_net(name, rounds, seconds_per_block)
        return {
            "nets": out,
            "settings": {
                "torch": torch.__version__,
                "torch_threads": 2,
                "method": "one process, interleaved rounds, median per call",
            },
        }
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(nets=tuple(sys.argv[1:]) or tuple(NETS)), indent=2))

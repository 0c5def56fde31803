"""The bench's one timer: interleaved rounds in one process (docs/METRICS.md, "Measuring: `make bench`").

Every callable runs one block (``inner`` back-to-back calls) per round, the callables one after
the other, so load from other processes hits all of them alike; a ratio of two medians over the
rounds is then a fair comparison on a shared machine. Own-CPU seconds are kept beside wall
seconds (less hit by waiting for a loaded core), and ``load_probe`` says how loaded the machine was.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable


def block_sizes(fns: dict[str, Callable], seconds_per_block: float) -> dict[str, int]:
    """Warm every fn up (one call) and size its block to about ``seconds_per_block`` (≥ 1 call)."""
    inner = {}
    for name, fn in fns.items():
        fn()
        t = time.perf_counter()
        fn()
        inner[name] = max(1, round(seconds_per_block / max(time.perf_counter() - t, 1e-6)))
    return inner


def interleaved(fns: dict[str, Callable], *, rounds: int, inner: dict[str, int]) -> dict[str, dict[str, list]]:
    """``rounds`` rounds of one block per fn, fns in turn. Per fn: {"wall": [s/call per round], "cpu": [...]}."""
    out = {name: {"wall": [], "cpu": []} for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t, c = time.perf_counter(), time.process_time()
            for _ in range(inner[name]):
                fn()
            out[name]["wall"].append((time.perf_counter() - t) / inner[name])
            out[name]["cpu"].append((time.process_time() - c) / inner[name])
    return out


def medians(times: dict[str, dict[str, list]], kind: str = "wall") -> dict[str, float]:
    return {name: statistics.median(v[kind]) for name, v in times.items()}


def round_ratio_quartiles(times: dict[str, dict[str, list]], unit: str) -> dict[str, list[float]]:
    """Quartiles (25 %, 75 %) over rounds of each fn's time / ``unit``'s time in the same round."""
    base = times[unit]["wall"]
    out = {}
    for name, v in times.items():
        ratios = [t / p for t, p in zip(v["wall"], base)]
        q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
        out[name] = [round(q[0], 3), round(q[2], 3)]
    return out


def _busy_jiffies() -> int | None:
    try:
        with open("/proc/stat") as f:
            cpu = f.readline().split()[1:]
    except OSError:
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in cpu[:8])
    return user + nice + system + irq + softirq + steal


def load_probe() -> Callable[[], dict]:
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

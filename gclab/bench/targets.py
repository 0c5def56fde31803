"""The one table of speed targets for the bench catalogue (issue 25; docs/METRICS.md, "Bench catalogue"),
and the check that writes met / not met per row of reports/bench.json.

- suite (``step_metrics(set_grad=True)`` + SGD step) ≤ ``SUITE_MAX_X_PLAIN[family]`` plain steps; the
  transformer and LSTM families take their counted multiply-add floor (gclab/bench/flops.py);
- exact GC alone ≤ the faster of the two naive baselines (gclab/bench/naive.py);
- per-example loss-gradient norms alone ≤ the fastest peer that runs on the net.

A target whose two sides did not both run is "not checked", with the reason.
"""

from __future__ import annotations

FLOP_FLOOR = "flop_floor"  # the family's target is its net's floor_suite_x_plain
SUITE_MAX_X_PLAIN: dict[str, float | str] = {
    "mlp": 3.0,
    "conv": 5.0,
    "resnet18_quarter": 6.0,
    "transformer": FLOP_FLOOR,
    "lstm": FLOP_FLOOR,
}
GC_MAX_VS_FASTEST_NAIVE = 1.0
NORMS_MAX_VS_FASTEST_PEER = 1.0


def suite_max(family: str, floor: dict | None) -> float | None:
    """The suite's target in plain steps for ``family``; None when it is the floor and none was counted."""
    if family not in SUITE_MAX_X_PLAIN:
        raise ValueError(
            f"no suite target for family {family!r}; add it to SUITE_MAX_X_PLAIN in gclab/bench/targets.py"
        )
    target = SUITE_MAX_X_PLAIN[family]
    if isinstance(target, str):  # FLOP_FLOOR
        return None if floor is None else round(floor["floor_suite_x_plain"], 2)
    return target


def _versus(ours: str, rivals: list[str], med: dict[str, float], limit: float, what: str) -> dict:
    running = [r for r in rivals if r in med]
    out: dict = {"target": f"{ours} ≤ {limit:g}× the fastest {what}"}
    if ours not in med:
        return {**out, "met": None, "why": f"{ours} did not run (see its entry under 'refused')"}
    if not running:
        return {**out, "met": None, "why": f"no {what} ran on this net"}
    fastest = min(running, key=med.__getitem__)
    ratio = med[ours] / med[fastest]
    return {**out, "fastest": fastest, "x_fastest": round(ratio, 3), "met": ratio <= limit}


def check(*, family: str, med: dict[str, float], floor: dict | None, naive: list[str], peers: list[str]) -> dict:
    """Per target: the target, the measured figure, ``met`` (True / False / None = not checked) and why.
    ``med``: median seconds per call of every method that ran, "plain" among them."""
    limit = suite_max(family, floor)
    basis = "the net's counted multiply-add floor" if SUITE_MAX_X_PLAIN[family] == FLOP_FLOOR else family
    suite: dict = {"target": f"suite ≤ {limit}× a plain step ({basis})", "max_x_plain": limit}
    if "suite" not in med:
        suite.update(met=None, why="suite did not run (see its entry under 'refused')")
    elif limit is None:
        suite.update(met=None, why="no FLOP floor was counted for this net")
    else:
        ratio = med["suite"] / med["plain"]
        suite.update(x_plain=round(ratio, 3), met=ratio <= limit)
    return {
        "suite": suite,
        "gc": _versus("gc", naive, med, GC_MAX_VS_FASTEST_NAIVE, "naive GC baseline"),
        "norms": _versus("norms", peers, med, NORMS_MAX_VS_FASTEST_PEER, "peer"),
    }

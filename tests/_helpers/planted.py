"""Planted stores built from the shipped sweeps (planted.store): on disk in the real Parquet layout
read through store.db views, or in memory for the repeated null stores of the calibration checks."""

from __future__ import annotations

from collections import Counter

from gclab.analysis.result import CONTRADICTED, INSUFFICIENT, SUPPORTED
from gclab.planted.calibrate import CADENCE, TARGET_FPR
from gclab.planted.store import ASSUMED_NOISE, planted_connection, write_planted_store
from gclab.store.db import connect


def pinned(effects: dict | None) -> dict:
    """`effects` over a fixed run noise (planted.store.ASSUMED_NOISE): tests of a test's logic must not
    move when `make paper`'s measured noise (planted.noise.MEASURED, tests/planted/test_noise.py) does."""
    return {**ASSUMED_NOISE, **(effects or {})}


def build(path, *, effects=None, **kw):
    """Write a planted store under `path` and return a connection with the real views."""
    write_planted_store(path, cadence=CADENCE, effects=pinned(effects), **kw)
    return connect(path, warn=False)


def memory(*, effects=None, **kw):
    """The same planted store in an in-memory DuckDB."""
    return planted_connection(cadence=CADENCE, effects=pinned(effects), **kw)


def verdicts(module, keep=lambda c: c, **kw) -> list[str]:
    con = memory(**kw)
    try:
        return keep(module.analyze(con).claims)["verdict"].to_list()
    finally:
        con.close()


def null_counts(module, n_stores: int, keep=lambda c: c, **kw) -> Counter:
    """Verdict counts over `n_stores` independent planted stores (rng seeds 1000, 1001, …)."""
    out = Counter()
    for s in range(n_stores):
        out.update(verdicts(module, keep, rng_seed=1000 + s, **kw))
    return out


def assert_calibrated(counts: Counter, n_tests: int) -> None:
    """On null stores: every test ran, and `supported` and `contradicted` each at most α + 0.02."""
    assert sum(counts.values()) == n_tests and counts[INSUFFICIENT] == 0, counts
    assert counts[SUPPORTED] / n_tests <= TARGET_FPR, counts
    assert counts[CONTRADICTED] / n_tests <= TARGET_FPR, counts

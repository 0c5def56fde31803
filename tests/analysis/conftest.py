"""Synthetic stores in the real Parquet layout (store.synthetic → RunFolder), read through store.db views."""
from __future__ import annotations

import polars as pl
import pytest
from scipy import stats

from store.db import connect
from store.synthetic import write_synthetic_store

SMALL = dict(n_steps=20, log_every=10, eval_every=10)  # few rows per run: calibration loops stay fast
ALPHA = 0.05


def build(path, **kw):
    """Write a synthetic store under `path` and return a connection with the real views."""
    write_synthetic_store(path, **{**SMALL, **kw})
    return connect(path, warn=False)


def null_hits(tmp_path_factory, module, n_stores: int, keep=lambda c: c, **kw) -> tuple[int, int]:
    """(claims called supported, claims tested) over `n_stores` independent null stores."""
    hits = tests = 0
    for s in range(n_stores):
        con = build(tmp_path_factory.mktemp("null"), rng_seed=1000 + s, **kw)
        claims = keep(module.analyze(con).claims).filter(pl.col("verdict") != "insufficient data")
        con.close()
        tests += claims.height
        hits += int((claims["verdict"] == "supported").sum())
    return hits, tests


def calibrated(hits: int, tests: int) -> bool:
    """At most about α: within the 99.5% quantile of Binomial(tests, α) (about 2α for 40 tests)."""
    return tests > 0 and hits <= stats.binom.ppf(0.995, tests, ALPHA)


@pytest.fixture(scope="session")
def default_store(tmp_path_factory):
    """Every default sweep with the paper's effects planted (3 seeds)."""
    path = tmp_path_factory.mktemp("default")
    write_synthetic_store(path, **SMALL)
    return path

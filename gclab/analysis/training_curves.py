"""Test loss over training of every completed run, for the report's first chart (no claim).

Table `test_loss`: one curve per run, binned by `analysis.curves.binned_curves` to at most 100
points (fewer with many runs: about 8,000 rows in all).
"""

from __future__ import annotations

from gclab.analysis.curves import binned_curves, points_per_run
from gclab.analysis.result import Analysis
from gclab.store.db import query


def analyze(con) -> Analysis:
    n_runs = query(con, "SELECT count(*) AS n FROM runs WHERE status = 'completed'")["n"][0]
    curves = binned_curves(
        con,
        "evals",
        {"test_loss": "x.loss"},
        where="x.split = 'test'",
        points=points_per_run(n_runs, budget=8_000, cap=100),
    )
    return Analysis("training_curves", {"test_loss": curves})

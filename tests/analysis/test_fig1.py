import polars as pl

from analysis import fig1
from tests.analysis.conftest import assert_calibrated, build, null_counts, verdicts

GROWS = pl.col("claim").str.contains("grows")


def test_near_minimal_interpolant_and_gc_grows_from_zero(tmp_path):
    a = fig1.analyze(build(tmp_path, sweeps=["fig1"]))
    assert a.claims["verdict"].to_list() == ["supported", "supported"]
    arc = a.tables["arc"]
    # Minimal interpolant through 10 points of x² on [−1, 1]: Σ √(Δx² + Δy²) by hand-checkable numpy.
    import numpy as np
    k = np.linspace(-1, 1, 10)
    assert abs(arc["arc_min"][0] - np.hypot(np.diff(k), np.diff(k**2)).sum()) < 1e-12
    assert ((arc["ratio"] > 1.0) & (arc["ratio"] < 1.1)).all()


def test_a_wiggly_fit_is_far_from_the_minimal_interpolant(tmp_path):
    a = fig1.analyze(build(tmp_path, sweeps=["fig1"], effects={"fig1_ripple": 0.2}))
    row = a.claims.row(0, named=True)
    assert row["verdict"] == "contradicted" and row["ci_low"] > 1.1


def test_gc_starting_high_is_contradicted():
    # GC at init equal to its final value: far above the 10% the claim allows.
    assert verdicts(fig1, keep=lambda c: c.filter(GROWS), sweeps=["fig1"], effects={"fig1_gc_start": 1.0}) \
        == ["contradicted"]


def test_gc_growth_is_calibrated_at_the_boundary():
    # GC at init exactly 10% of its final value: the boundary of the claim.
    counts = null_counts(fig1, 60, keep=lambda c: c.filter(GROWS), sweeps=["fig1"], effects={"fig1_gc_start": 0.1})
    assert_calibrated(counts, 60)

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from gclab.analysis import fig1
from gclab.store.layout import run_dir
from tests._helpers.planted import assert_calibrated, build, memory, null_counts, verdicts

GROWS = pl.col("claim") == fig1.GC_CLAIM
ARC = pl.col("claim") == fig1.ARC_CLAIM


def test_an_interpolating_net_is_equivalent_to_the_minimal_interpolant_and_gc_grows(tmp_path):
    a = fig1.analyze(build(tmp_path, sweeps=["fig1"]))
    assert a.claims["verdict"].to_list() == ["supported"] * 3
    arc = a.tables["arc"]
    # Minimal interpolant through 10 points of x² on [−1, 1]: Σ √(Δx² + Δy²) by hand-checkable numpy.
    k = np.linspace(-1, 1, 10)
    assert abs(arc["arc_min"][0] - np.hypot(np.diff(k), np.diff(k**2)).sum()) < 1e-12
    assert arc["reached_fit"].all() and (arc["train_mse"] <= fig1.FIT_MSE).all()
    # Brute force from the raw Parquet files: the curve at the first eval with train MSE ≤ FIT_MSE.
    for r in arc.iter_rows(named=True):
        d = run_dir(tmp_path, "fig1", r["run_id"])
        ev = pl.from_arrow(pq.read_table(d / "evals.parquet")).filter(pl.col("split") == "train").sort("step")
        step = ev.filter(pl.col("loss") <= fig1.FIT_MSE)["step"][0]
        pr = pl.from_arrow(pq.read_table(d / "probes.parquet")).filter(pl.col("step") == step).sort("t")
        length = np.hypot(np.diff(pr["t"].to_numpy()), np.diff(pr["output"].to_numpy())).sum()
        assert r["step"] == step and abs(r["arc_length"] - length) < 1e-9
    assert ((arc["ratio"] > 0.9) & (arc["ratio"] < 1.1)).all()


def test_the_zero_function_and_a_straight_line_fit_fail_the_arc_length_test():
    for name, fx in [
        ("zero function", {"fig1_fit": 0.0, "fig1_line": 0.0}),
        ("least-squares line", {"fig1_fit": 0.0, "fig1_line": 1.0}),
    ]:
        a = fig1.analyze(memory(sweeps=["fig1"], effects=fx))
        row = a.claims.filter(ARC).row(0, named=True)
        assert row["verdict"] == "contradicted", (name, row)
        # a flat curve: ≈ 2 / 2.95 = 0.68 of the interpolant's length (+ the planted ripple and noise)
        assert 0.6 < row["value"] < 0.8 and row["ci_high"] < 1 - fig1.ARC_MARGIN, name
        assert "10 of 10 runs never reached" in row["statistic"]  # fig1 has 10 seeds
        # and GC is never read at a matched training error these fits never reach
        assert a.claims.filter(GROWS)["verdict"].to_list() == ["insufficient data"]


def test_a_wiggly_fit_is_far_from_the_minimal_interpolant(tmp_path):
    a = fig1.analyze(build(tmp_path, sweeps=["fig1"], effects={"fig1_ripple": 0.2}))
    row = a.claims.filter(ARC).row(0, named=True)
    assert row["verdict"] == "contradicted" and row["ci_low"] > 1.1


def test_gc_starting_high_is_contradicted():
    # GC at init equal to its final value: far above the 10% the claim allows.
    assert verdicts(fig1, keep=lambda c: c.filter(GROWS), sweeps=["fig1"], effects={"fig1_gc_start": 1.0}) == [
        "contradicted"
    ]


def test_gc_growth_is_calibrated_at_the_boundary():
    # GC at init exactly 10% of its final value: the boundary of the claim.
    counts = null_counts(fig1, 60, keep=lambda c: c.filter(GROWS), sweeps=["fig1"], effects={"fig1_gc_start": 0.1})
    assert_calibrated(counts, 60)


def test_minimal_arc_is_the_polyline_through_the_parabola_points():
    """Three points (−1, 1), (0, 0), (1, 1): two segments of length √2; two points: the chord of length 2."""
    import math

    from gclab.analysis.fig1 import minimal_arc

    assert math.isclose(minimal_arc(3), 2 * math.sqrt(2), rel_tol=1e-15)
    assert math.isclose(minimal_arc(2), 2.0, rel_tol=1e-15)


OWN = pl.col("claim") == fig1.OWN_CLAIM


def test_arc_against_the_nets_own_values_at_every_eval(tmp_path):
    """Every probe curve (every eval) against the polyline through the curve's own values at the training
    inputs: ≥ 1 by construction, near 1 for the planted interpolant, far above for a wiggly fit."""
    a = fig1.analyze(build(tmp_path, sweeps=["fig1"]))
    own = a.tables["own_arc"]
    assert (own["ratio"] >= 1 - 1e-12).all() and own["run_id"].n_unique() == 10
    # Brute force for one run from its raw probes file, independent of polars' grouping.
    run_id = own["run_id"][0]
    pr = pl.from_arrow(pq.read_table(run_dir(tmp_path, "fig1", run_id) / "probes.parquet")).sort("step", "t")
    expect = []
    for step in sorted(set(pr["step"].to_list())):
        g = pr.filter(pl.col("step") == step)
        t, f = g["t"].to_numpy(), g["output"].to_numpy()
        x = np.linspace(-1, 1, 10)
        fx = np.array([np.interp(xi, t, f) for xi in x])
        expect.append(np.hypot(np.diff(t), np.diff(f)).sum() / np.hypot(np.diff(x), np.diff(fx)).sum())
    got = own.filter(pl.col("run_id") == run_id).sort("step")["ratio"].to_numpy()
    np.testing.assert_allclose(got, expect, rtol=1e-12)
    row = a.claims.filter(OWN).row(0, named=True)
    maxima = own.group_by("run_id").agg(pl.col("ratio").max())["ratio"].to_numpy()
    assert row["verdict"] == "supported" and abs(row["value"] - maxima.mean()) < 1e-12
    wiggly = fig1.analyze(memory(sweeps=["fig1"], effects={"fig1_ripple": 0.2})).claims.filter(OWN)
    assert wiggly["verdict"].to_list() == ["contradicted"] and wiggly["value"][0] > 1.1

import pyarrow.parquet as pq
import polars as pl

from analysis import igr
from store.layout import run_dir
from tests.analysis.conftest import assert_calibrated, build, null_counts, verdicts

HB = pl.col("claim").str.contains("h/b")


def test_identity_holds_and_gc_falls_with_h_over_b(tmp_path):
    a = igr.analyze(build(tmp_path, sweeps=["igr"]))
    assert a.claims["verdict"].to_list() == ["supported", "supported"]
    assert a.claims["kind"].to_list() == ["check", "paper"]
    assert a.claims["value"][0] <= 1e-12 and a.tables["violations"].is_empty()
    assert -0.5 < a.claims["value"][1] < -0.1  # planted elasticity −0.3
    terms = a.tables["terms"]
    assert {"R_B", "A_B", "C_B", "grad_norm_sq", "bin"} <= set(terms.columns) and terms["bin"].max() <= 19


def test_one_row_breaking_eq6_is_flagged_and_named(tmp_path):
    a = igr.analyze(build(tmp_path, sweeps=["igr"], effects={"eq6_breaks": 1}))
    row = a.claims.row(0, named=True)
    bad = a.tables["violations"]
    assert row["verdict"] == "contradicted" and bad.height == 1
    run_id, step = bad["run_id"][0], bad["step"][0]
    assert run_id in row["statistic"] and f"step {step}" in row["statistic"]
    # Cross-check on the raw Parquet file of that run, without DuckDB.
    steps = pl.from_arrow(pq.read_table(run_dir(tmp_path, "igr", run_id) / "steps.parquet"))
    resid = (steps["grad_norm_sq"] - steps["residual_term"] - steps["label_alignment"] - steps["batch_alignment"]).abs()
    assert steps.filter(resid > 1e-9 * steps["grad_norm_sq"].abs())["step"].to_list() == [step]


def test_gc_rising_with_h_over_b_is_contradicted():
    assert verdicts(igr, keep=lambda c: c.filter(HB), sweeps=["igr"], effects={"igr_slope": 0.3}) == ["contradicted"]


def test_h_over_b_null_is_calibrated():
    counts = null_counts(igr, 60, keep=lambda c: c.filter(HB), sweeps=["igr"], effects={"igr_slope": 0.0})
    assert_calibrated(counts, 60)

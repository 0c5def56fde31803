import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from scipy import stats

from gclab.analysis import bfd
from gclab.planted.calibrate import CADENCE
from gclab.planted.store import sweep_runs
from gclab.store.layout import run_dir
from tests._helpers.planted import assert_calibrated, build, memory, null_counts, verdicts

N_RUNS = len(sweep_runs("bfd"))
NULL = {"bfd_drop": 0.0, "bfd_random_gap": 0.0, "ffd_deficit": bfd.FFD_MARGIN}
TESTS = pl.col("kind") == "paper"


def test_bfd_decreases_stays_below_the_full_dimension_per_dataset(tmp_path):
    a = bfd.analyze(build(tmp_path, sweeps=["bfd"]))
    assert a.claims["verdict"].to_list() == ["supported"] * 10
    assert a.claims["kind"].to_list() == (["paper"] * 4 + ["check"]) * 2
    # one test per claim and dataset, both output heads in it (never pooled across datasets)
    assert a.claims["claim"].str.contains("(mnist1d)", literal=True).sum() == 5
    assert (a.claims.filter(TESTS)["n_runs"] == N_RUNS // 2).all()
    # The stacked test against a brute force: the mean of the two heads' means, pooled-variance t.
    last = a.tables["last_eval"].filter(pl.col("dataset") == "mnist1d")
    d = ((last["bfd_train"] - last["ffd"]) / last["ceiling"]).to_numpy()
    heads = [d[(last["output"] == h).to_numpy()] for h in ("logits", "softmax")]
    est = (heads[0].mean() + heads[1].mean()) / 2
    pooled = sum(((h - h.mean()) ** 2).sum() for h in heads) / (len(d) - 2)
    se = np.sqrt(pooled / 4 * (1 / len(heads[0]) + 1 / len(heads[1])))
    row = a.claims.filter(
        pl.col("claim").str.starts_with("BFD on train inputs") & pl.col("claim").str.contains("mnist1d")
    )
    assert row["value"][0] == pytest.approx(est, rel=1e-9)
    assert row["p_value"][0] == pytest.approx(2 * stats.t.sf(abs(est / se), len(d) - 2), rel=1e-6)
    assert (a.tables["per_run_trend"]["kendall_tau"] < 0).all()
    last = a.tables["last_eval"]
    assert last.height == N_RUNS and (last["bfd_train"] < last["ffd"]).all()
    # Brute force from one run's raw fdim file: FFD = max rank at the largest random batch of the last eval.
    r = last.row(0, named=True)
    f = pl.from_arrow(pq.read_table(run_dir(tmp_path, "bfd", r["run_id"]) / "fdim.parquet"))
    f = f.filter((pl.col("step") == f["step"].max()) & (pl.col("split") == "random"))
    top = f.filter(pl.col("n_inputs") == f["n_inputs"].max())
    assert r["ffd"] == top["bfd"].max() and r["ceiling"] == top["bfd_max"].max()
    cfg = next(c for c in sweep_runs("bfd", cadence=CADENCE) if c.run_id == r["run_id"])
    assert r["output"] == cfg.bfd_output and r["n_inputs"] == max(cfg.bfd_random_batches)


def test_rising_bfd_and_a_low_full_dimension_are_contradicted():
    # FFD 20% under its ceiling; training inputs start 10% above it and rise by 5%.
    fx = {"bfd_drop": -0.05, "bfd_random_gap": -0.1, "ffd_deficit": 0.2}
    assert (
        verdicts(bfd, sweeps=["bfd"], effects=fx, tables=["runs", "evals", "fdim"])
        == (["contradicted"] * 4 + ["supported"]) * 2
    )


def _off_plateau(con, top: int) -> None:
    """Every random rank lowered, the smaller batches by more: the rank still rose at the largest batch, and
    stays below its ceiling (a rank at the ceiling is the FFD exactly)."""
    con.sql(f"UPDATE fdim SET bfd = bfd - CASE WHEN n_inputs < {top} THEN 3 ELSE 1 END WHERE split = 'random'")


def test_a_full_dimension_off_its_plateau_fails_the_check():
    con = memory(sweeps=["bfd"], tables=["runs", "evals", "fdim"])
    top = max(sweep_runs("bfd")[0].bfd_random_batches)
    _off_plateau(con, top)
    rows = bfd.analyze(con).claims.filter(pl.col("kind") == "check")
    assert rows["verdict"].to_list() == ["contradicted"] * 2
    assert rows["statistic"].str.contains(f"{N_RUNS // 2} of {N_RUNS // 2} runs not at the plateau").all()


def test_a_rank_that_rose_to_its_ceiling_has_plateaued():
    """No batch exceeds bfd_max, so a largest-batch rank at the ceiling is the FFD whatever the smaller
    batch gave (the paper store's MNIST-1D runs: 897 at n = 400, 898 = P − H at n = 800)."""
    con = memory(sweeps=["bfd"], tables=["runs", "evals", "fdim"])
    top = max(sweep_runs("bfd")[0].bfd_random_batches)
    con.sql(f"UPDATE fdim SET bfd = bfd_max WHERE split = 'random' AND n_inputs = {top}")
    con.sql(f"UPDATE fdim SET bfd = bfd - 3 WHERE split = 'random' AND n_inputs < {top}")
    rows = bfd.analyze(con).claims
    checks = rows.filter(pl.col("kind") == "check")
    assert checks["verdict"].to_list() == ["supported"] * 2
    assert checks["statistic"].str.contains("0 of").all()
    against = rows.filter(TESTS & pl.col("claim").str.contains("full functional dimension"))
    assert against.height == 6 and "insufficient data" not in set(against["verdict"])
    # One run one below its ceiling at the top, still rising: that run alone fails the check.
    run = con.execute("SELECT run_id FROM runs WHERE dataset = 'mnist1d' ORDER BY run_id LIMIT 1").fetchall()[0][0]
    con.sql(f"UPDATE fdim SET bfd = bfd - 1 WHERE split = 'random' AND n_inputs = {top} AND run_id = '{run}'")
    checks = bfd.analyze(con).claims.filter(pl.col("kind") == "check")
    assert checks["verdict"].to_list().count("contradicted") == 1
    assert checks.filter(pl.col("verdict") == "contradicted")["statistic"].str.contains(f"run {run}").all()


def test_rows_against_the_full_dimension_need_the_plateau():
    """Off the plateau the FFD is only a lower bound: the rows comparing against it cannot be read."""
    con = memory(sweeps=["bfd"], tables=["runs", "evals", "fdim"])
    top = max(sweep_runs("bfd")[0].bfd_random_batches)
    _off_plateau(con, top)
    rows = bfd.analyze(con).claims.filter(TESTS)
    against = rows.filter(pl.col("claim").str.contains("full functional dimension"))
    assert against.height == 6 and set(against["verdict"]) == {"insufficient data"}
    assert against["statistic"].str.contains("only a lower bound").all()
    assert set(rows.filter(pl.col("claim").str.contains("during training"))["verdict"]) == {"supported"}


def test_bfd_nulls_are_calibrated():
    counts = null_counts(
        bfd, 30, keep=lambda c: c.filter(TESTS), sweeps=["bfd"], effects=NULL, tables=["runs", "evals", "fdim"]
    )
    assert_calibrated(counts, 30 * 8)


def test_too_few_runs_is_insufficient(tmp_path):
    a = bfd.analyze(build(tmp_path, sweeps=["bfd"], seeds=1))
    per_dataset = len(sweep_runs("bfd", seeds=1)) // 2
    tested = a.claims.filter(TESTS)
    assert set(tested["verdict"]) == {"insufficient data"} and (tested["n_runs"] == per_dataset).all()

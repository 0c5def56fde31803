import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
import statsmodels.api as sm
from scipy import stats

from gclab.analysis import igr
from gclab.planted.calibrate import NO_TREND, TARGET_FPR
from gclab.planted.store import sweep_runs
from gclab.store.layout import run_dir
from tests._helpers.planted import assert_calibrated, build, null_counts, verdicts

HB = pl.col("claim") == igr.HB_CLAIM
# fig4's and igr's runs with only igr's h/b surface planted (fig4's trend effects at 0; planted.calibrate)
GRID = {"sweeps": list(igr.SWEEPS)}


def brute_design(runs: pl.DataFrame) -> np.ndarray:
    """[1, log h, log b, seed indicators]: the dummy-variable design the seed fixed effects stand for."""
    seeds = sorted(set(runs["seed"]))
    return np.column_stack(
        [
            np.ones(runs.height),
            np.log(runs["lr"]),
            np.log(runs["batch_size"]),
            *[(runs["seed"] == s).to_numpy().astype(float) for s in seeds[1:]],
        ]
    )


def brute_ols(runs: pl.DataFrame) -> np.ndarray:
    """Least squares of log GC on `brute_design` by numpy lstsq."""
    return np.linalg.lstsq(brute_design(runs), np.log(runs["gc"].to_numpy()), rcond=None)[0]


def test_identity_holds_and_gc_falls_with_h_over_b(tmp_path):
    a = igr.analyze(build(tmp_path, **GRID, effects={"unfitted": 2, **NO_TREND}))
    assert a.claims["verdict"].to_list() == ["supported"] * 4 + ["inconclusive", "supported", "supported"]
    assert a.claims["kind"].to_list() == ["check", "paper", "paper", "paper", "condition", "toolkit", "condition"]
    assert "robustness" in a.claims["claim"][5] and a.claims["claim"][6] == igr.STEP3_CLAIM
    assert a.claims["value"][0] <= 1e-12 and a.tables["violations"].is_empty()
    beta = brute_ols(a.tables["h_over_b"])
    assert a.claims["value"][1:5].to_list() == pytest.approx(
        [beta[1], beta[2], (beta[1] - beta[2]) / 2, beta[1] + beta[2]], abs=1e-9
    )
    assert -0.5 < a.claims["value"][3] < -0.1  # planted elasticity −0.3 along h/b
    # HC3 p-values and R² of the dummy-variable regression itself (statsmodels), which the fixed effects replace
    hb = a.tables["h_over_b"]
    dummy = sm.OLS(np.log(hb["gc"].to_numpy()), brute_design(hb)).fit(cov_type="HC3", use_t=True)
    rows = np.zeros((4, dummy.params.size))
    rows[0, 1], rows[1, 2], rows[2, 1:3], rows[3, 1:3] = 1, 1, (0.5, -0.5), (1, 1)
    assert a.claims["p_value"][1:5].to_list() == pytest.approx([float(dummy.t_test(r).pvalue) for r in rows], rel=1e-9)
    assert a.claims["statistic"][1:5].str.contains(f"R² = {dummy.rsquared:.3f}", literal=True).all()
    # one grid: fig4's runs (one diverged at the top lr) and igr's corners, 2 unfitted in each sweep
    hb = a.tables["h_over_b"]
    n4, ni = len(sweep_runs("fig4")), len(sweep_runs("igr"))
    assert hb.height == n4 - 1 + ni - 4 and a.tables["excluded"]["n_excluded"].to_list() == [2, 2]
    assert dict(hb.group_by("sweep").len().iter_rows()) == {"fig4": n4 - 3, "igr": ni - 2}
    assert hb.filter(pl.col("sweep") == "igr").select("lr", "batch_size").unique().height == 4
    stat = a.claims["statistic"][1:6]
    assert stat.str.contains(f"fig4: 2 of {n4 - 1} completed runs excluded").all()
    assert stat.str.contains(f"igr: 2 of {ni} completed runs excluded").all()
    # §5 step 3 against a per-run loop over the raw steps files and scipy's one-sample t-test
    shares = []
    for run_id, sweep in hb.select("run_id", "sweep").iter_rows():
        st = pl.read_parquet(run_dir(tmp_path, sweep, run_id) / "steps.parquet").filter(pl.col("residual_term") > 0)
        a_neg = np.minimum(st["label_alignment"].to_numpy(), 0)
        c_neg = np.minimum(st["batch_alignment"].to_numpy(), 0)
        shares.append(float(np.mean((a_neg + c_neg) / st["residual_term"].to_numpy())))
    t = stats.ttest_1samp(shares, igr.STEP3_BOUND)
    step3 = a.claims.row(6, named=True)
    assert step3["value"] == pytest.approx(np.mean(shares), rel=1e-9) and step3["n_runs"] == hb.height
    assert step3["p_value"] == pytest.approx(t.pvalue, rel=1e-6)
    # The binned terms of one run against polars on its raw Parquet file (all its planted rows are finite).
    terms = a.tables["terms"]
    run_id, sweep = terms["run_id"][0], terms["sweep"][0]
    steps = pl.read_parquet(run_dir(tmp_path, sweep, run_id) / "steps.parquet")
    last = steps["step"].max()
    expect = (
        steps.with_columns(bin=pl.min_horizontal((20 * pl.col("step") / (last + 1)).floor(), 19).cast(pl.Int32))
        .group_by("bin")
        .agg(R_B=pl.col("residual_term").mean(), C_B=pl.col("batch_alignment").mean())
        .sort("bin")
    )
    got = terms.filter(pl.col("run_id") == run_id).sort("bin")
    assert got["bin"].to_list() == expect["bin"].to_list() and expect.height >= 2
    np.testing.assert_allclose(got["R_B"], expect["R_B"], rtol=1e-12)
    np.testing.assert_allclose(got["C_B"], expect["C_B"], rtol=1e-12)


def test_same_sign_lr_and_batch_effects_break_the_h_over_b_condition():
    # d log GC/d log h = −0.3, d log GC/d log b = +0.3 − 0.6 = −0.3: both effects fall, as the issue measured;
    # the h/b contrast (β_h − β_b)/2 is then exactly 0, which TOST shows inside ±δ (absent).
    got = verdicts(
        igr,
        keep=lambda c: c.filter(pl.col("kind").is_in(["paper", "condition"])),
        **GRID,
        effects={"igr_b_extra": -0.6, **NO_TREND},
    )
    assert got == ["supported", "contradicted", "absent", "contradicted", "supported"]  # last: §5 step 3


def test_one_row_breaking_eq6_is_flagged_and_named(tmp_path):
    a = igr.analyze(build(tmp_path, **GRID, effects={"eq6_breaks": 1}))
    row = a.claims.row(0, named=True)
    bad = a.tables["violations"]
    assert row["verdict"] == "contradicted" and bad.height == 1
    run_id, step = bad["run_id"][0], bad["step"][0]
    assert run_id in row["statistic"] and f"step {step}" in row["statistic"]
    # Cross-check on the raw Parquet file of that run, without DuckDB.
    steps = pl.from_arrow(pq.read_table(run_dir(tmp_path, bad["sweep"][0], run_id) / "steps.parquet"))
    resid = (steps["grad_norm_sq"] - steps["residual_term"] - steps["label_alignment"] - steps["batch_alignment"]).abs()
    assert steps.filter(resid > 1e-9 * steps["grad_norm_sq"].abs())["step"].to_list() == [step]


def test_gc_rising_with_h_over_b_is_contradicted():
    got = verdicts(igr, keep=lambda c: c.filter(HB), **GRID, effects={"igr_slope": 0.3, **NO_TREND})
    assert got == ["contradicted"]


def test_h_over_b_null_is_calibrated():
    counts = null_counts(igr, 60, keep=lambda c: c.filter(HB), **GRID, effects={"igr_slope": 0.0, **NO_TREND})
    assert_calibrated(counts, 60)


def test_only_h_over_b_condition_is_rarely_falsely_contradicted():
    # Planted exactly through h/b: β_h + β_b = 0 holds, so `contradicted` is a false alarm.
    ratio = pl.col("claim") == igr.RATIO_CLAIM
    counts = null_counts(igr, 60, keep=lambda c: c.filter(ratio), **GRID, effects=NO_TREND)
    assert sum(counts.values()) == 60 and counts["supported"] == 0
    assert counts["contradicted"] / 60 <= TARGET_FPR, counts

import polars as pl

from gclab.analysis import double_descent
from gclab.planted.store import sweep_runs
from tests._helpers.planted import assert_calibrated, build, memory, null_counts, verdicts

WIDTHS = sorted({r.width for r in sweep_runs("fig5")})
N_SEEDS = len({r.seed for r in sweep_runs("fig5")})
PLANTED_PEAK = (len(WIDTHS) - 1) // 2  # the planted interpolation threshold and peak
DD = pl.col("claim").str.contains("double-descends")


def test_planted_peak_is_located_within_one_grid_step(tmp_path):
    con = build(tmp_path, sweeps=["fig5"])
    a = double_descent.analyze(con)
    peaks = a.tables["peaks"]
    for row in peaks.iter_rows(named=True):
        assert abs(WIDTHS.index(row["peak_width"]) - PLANTED_PEAK) <= 1
        assert row["threshold_width"] == WIDTHS[PLANTED_PEAK]
    assert a.claims.filter(DD)["verdict"].to_list() == ["supported", "supported"]
    location = a.claims.filter(pl.col("claim").str.contains("interpolation")).row(0, named=True)
    assert location["verdict"] == "supported" and abs(location["value"]) <= 1
    assert location["kind"] == "literature" and "Nakkiran" in location["source"]


def test_by_width_has_t_intervals_over_seeds(tmp_path):
    con = build(tmp_path, sweeps=["fig5"])
    t = double_descent.analyze(con).tables["by_width"]
    assert t.columns[:9] == [
        "width",
        "n_seeds",
        "test_loss_mean",
        "test_loss_lo",
        "test_loss_hi",
        "gc_mean",
        "gc_lo",
        "gc_hi",
        "train_err_mean",
    ]
    assert t["width"].to_list() == WIDTHS and (t["n_seeds"] == N_SEEDS).all()
    assert ((t["test_loss_lo"] < t["test_loss_mean"]) & (t["test_loss_mean"] < t["test_loss_hi"])).all()
    # A hand check of one width: mean ± t(0.975, n − 1)·sd/√n from the runs themselves.
    from scipy import stats

    raw = con.sql(
        f"SELECT gc FROM evals e JOIN runs r USING (run_id) WHERE r.sweep = 'fig5' "
        f"AND r.width = {WIDTHS[0]} AND e.split = 'train' AND e.step = r.steps"
    ).pl()["gc"]
    row = t.row(0, named=True)
    assert abs(row["gc_mean"] - raw.mean()) < 1e-12
    half = stats.t.ppf(0.975, N_SEEDS - 1) * raw.std() / N_SEEDS**0.5
    assert abs(row["gc_hi"] - (raw.mean() + half)) < 1e-9


def test_a_dip_at_the_threshold_is_contradicted():
    # GC = profile^−0.5 dips where the paper says it peaks; test loss = 1 − 0.4 (GC − 1)² dips there too.
    a = double_descent.analyze(memory(sweeps=["fig5"], effects={"fig5_peak": -0.5}))
    assert a.claims.filter(DD)["verdict"].to_list()[1] == "contradicted"
    b = double_descent.analyze(memory(sweeps=["fig5"], effects={"u_curvature": -0.4}))
    assert b.claims.filter(DD)["verdict"].to_list() == ["contradicted", "supported"]
    location = b.claims.filter(~DD).row(0, named=True)
    assert location["verdict"] == "insufficient data" and "no significant test-loss peak" in location["statistic"]


def test_flat_curves_are_inconclusive():
    flat = verdicts(
        double_descent, keep=lambda c: c.filter(DD), sweeps=["fig5"], effects={"fig5_peak": 0.0, "u_curvature": 0.0}
    )
    assert "contradicted" not in flat


def test_peak_test_is_calibrated_on_a_flat_null():
    # Flat curves are the hardest null for a selected peak: the permutation test re-selects it.
    counts = null_counts(
        double_descent, 30, keep=lambda c: c.filter(DD), sweeps=["fig5"], effects={"fig5_peak": 0.0, "u_curvature": 0.0}
    )
    assert_calibrated(counts, 60)

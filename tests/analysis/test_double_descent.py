import polars as pl

from analysis import double_descent
from store.synthetic import FIG5_WIDTHS
from tests.analysis.conftest import build, calibrated, null_hits

PLANTED_PEAK = (len(FIG5_WIDTHS) - 1) // 2  # the synthetic interpolation threshold and peak
DD = pl.col("claim").str.contains("double-descends")


def test_planted_peak_is_located_within_one_grid_step(tmp_path):
    con = build(tmp_path, sweeps=["fig5"])
    a = double_descent.analyze(con)
    peaks = a.tables["peaks"]
    for row in peaks.iter_rows(named=True):
        assert abs(FIG5_WIDTHS.index(row["peak_width"]) - PLANTED_PEAK) <= 1
        assert row["threshold_width"] == FIG5_WIDTHS[PLANTED_PEAK]
    assert a.claims.filter(DD)["verdict"].to_list() == ["supported", "supported"]
    location = a.claims.filter(pl.col("claim").str.contains("interpolation")).row(0, named=True)
    assert location["verdict"] == "supported" and abs(location["value"]) <= 1


def test_by_width_has_t_intervals_over_seeds(tmp_path):
    con = build(tmp_path, sweeps=["fig5"])
    t = double_descent.analyze(con).tables["by_width"]
    assert t.columns[:9] == ["width", "n_seeds", "test_loss_mean", "test_loss_lo", "test_loss_hi", "gc_mean",
                             "gc_lo", "gc_hi", "train_err_mean"]
    assert t["width"].to_list() == FIG5_WIDTHS and (t["n_seeds"] == 3).all()
    assert ((t["test_loss_lo"] < t["test_loss_mean"]) & (t["test_loss_mean"] < t["test_loss_hi"])).all()
    # A hand check of one width: mean ± t(0.975, 2)·sd/√3 from the runs themselves.
    raw = con.sql("SELECT gc FROM evals e JOIN runs r USING (run_id) WHERE r.sweep = 'fig5' AND r.width = 2 "
                  "AND e.split = 'train' AND e.step = r.steps").pl()["gc"]
    row = t.row(0, named=True)
    assert abs(row["gc_mean"] - raw.mean()) < 1e-12
    assert abs(row["gc_hi"] - (raw.mean() + 4.302652729911275 * raw.std() / 3**0.5)) < 1e-9


def test_monotone_widths_have_no_double_descent(tmp_path):
    con = build(tmp_path, sweeps=["fig5"], effects={"fig5_peak": False})
    a = double_descent.analyze(con)
    assert a.claims.filter(DD)["verdict"].to_list() == ["contradicted", "contradicted"]


def test_peak_test_is_calibrated_on_a_flat_null(tmp_path_factory):
    # Flat curves are the hardest null for a selected peak: the permutation test re-selects it.
    hits, tests = null_hits(tmp_path_factory, double_descent, 20, keep=lambda c: c.filter(DD),
                            sweeps=["fig5"], seeds=2, effects={"fig5_flat": True})
    assert tests == 40 and calibrated(hits, tests), (hits, tests)

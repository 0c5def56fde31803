import polars as pl

from analysis import trends
from planted.store import TREND_SWEEPS, sweep_runs
from tests.analysis.conftest import assert_calibrated, build, memory, null_counts, verdicts

TRENDS = {"trend_slope": 1.0, "acc_slope": 0.05, "output_shrink": 2.0}
AGAINST = {k: -v for k, v in TRENDS.items()}
NULL = dict.fromkeys(TRENDS, 0.0)


def test_moderate_trends_are_detected_in_the_papers_direction(tmp_path):
    # trend_slope 0.5 = GC changes by e^0.5 ≈ 1.65× across a grid, against 10% run noise and 20% seed shifts.
    con = build(tmp_path, sweeps=["fig2", "fig3", "fig4", "gcreg"], effects={"trend_slope": 0.5})
    a = trends.analyze(con)
    tested = a.claims.filter(pl.col("verdict") != "insufficient data")
    # fig2 (2 rows), fig3 (4), gcreg (2), fig4 SGD (3); momentum/Adam sweeps were not collected.
    assert tested.height == 11
    assert tested["verdict"].to_list() == ["supported"] * 11
    assert set(tested["kind"]) == {"paper"} and tested["source"].str.contains("seed 002").all()
    missing = a.claims.filter(pl.col("experiment").is_in(["fig4_momentum", "fig4_adam"]))
    assert missing.height == 4 and set(missing["verdict"]) == {"insufficient data"}
    table = a.tables["trends"].filter(pl.col("heuristic") == "batch_size (SGD)").row(0, named=True)
    assert table["spearman_rho"] > 0 and table["slope_lo"] > 0 and table["effect_ratio"] > 1


def test_every_trend_row_follows_the_planted_direction():
    """Paper's direction → supported; against it → contradicted, on every fig2/fig3/fig4/gcreg row."""
    assert verdicts(trends, sweeps=TREND_SWEEPS, effects=TRENDS) == ["supported"] * 15
    assert verdicts(trends, sweeps=TREND_SWEEPS, effects=AGAINST) == ["contradicted"] * 15


def test_a_flat_trend_is_inconclusive_not_contradicted():
    con = memory(sweeps=["gcreg"], effects=NULL, rng_seed=5)
    row = trends.analyze(con).claims.filter(pl.col("claim").str.contains("GC penalty")).row(0, named=True)
    assert row["verdict"] == "inconclusive" and "no significant effect" in row["statistic"]
    assert 0.05 <= row["p_value"] <= 1


def test_diverged_runs_are_left_out(tmp_path):
    con = build(tmp_path, sweeps=["fig4"], effects={"diverged": 2})
    assert con.sql("SELECT count(*) FROM runs WHERE status = 'diverged'").fetchall()[0][0] == 2
    lr = trends.analyze(con).tables["trends"].filter(pl.col("heuristic") == "lr (SGD)").row(0, named=True)
    fig4 = sweep_runs("fig4")
    n_lr = len({r.lr for r in fig4})
    n_seeds = len({r.seed for r in fig4})
    assert lr["n_levels"] == n_lr and lr["n_runs"] == n_lr * n_seeds - 2


def test_null_trends_are_calibrated():
    # 40 stores × 6 rows (fig3's four regularizers, gcreg's GC and accuracy) with no effect planted.
    counts = null_counts(trends, 40, keep=lambda c: c.filter(pl.col("experiment").is_in(["fig3", "gcreg"])),
                         sweeps=["fig3", "gcreg"], effects=NULL)
    assert_calibrated(counts, 240)

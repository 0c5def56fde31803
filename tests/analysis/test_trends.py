import polars as pl

from analysis import trends
from tests.analysis.conftest import build, calibrated, null_hits

GC_ROWS = pl.col("claim").str.contains("GC")


def test_moderate_trends_are_detected_in_the_papers_direction(tmp_path):
    # trend_slope 0.3 = GC changes by e^0.3 ≈ 1.35× across a grid, against 10% seed noise.
    con = build(tmp_path, sweeps=["fig2", "fig3", "fig4", "gcreg"], effects={"trend_slope": 0.3})
    a = trends.analyze(con)
    tested = a.claims.filter(pl.col("verdict") != "insufficient data")
    # fig2 (2 rows), fig3 (4), gcreg (2), fig4 SGD (3); momentum/Adam sweeps were not collected.
    assert tested.height == 11
    assert tested["verdict"].to_list() == ["supported"] * 11
    missing = a.claims.filter(pl.col("experiment").is_in(["fig4_momentum", "fig4_adam"]))
    assert missing.height == 4 and set(missing["verdict"]) == {"insufficient data"}
    table = a.tables["trends"].filter(pl.col("heuristic") == "batch_size (SGD)").row(0, named=True)
    assert table["spearman_rho"] > 0 and table["slope_lo"] > 0 and table["effect_ratio"] > 1


def test_trend_against_the_paper_is_contradicted(tmp_path):
    con = build(tmp_path, sweeps=["gcreg"], effects={"trend_slope": -0.5})
    row = trends.analyze(con).claims.filter(pl.col("claim").str.contains("GC penalty")).row(0, named=True)
    assert row["verdict"] == "contradicted" and row["value"] > 0 and "opposite" in row["statistic"]


def test_diverged_runs_are_left_out(tmp_path):
    con = build(tmp_path, sweeps=["fig4"])
    assert con.sql("SELECT count(*) FROM runs WHERE status = 'diverged'").fetchall()[0][0] == 3
    lr = trends.analyze(con).tables["trends"].filter(pl.col("heuristic") == "lr (SGD)").row(0, named=True)
    assert lr["n_runs"] == 15 and lr["n_levels"] == 5  # the lr = 1.0 diverged runs are not a level


def test_null_trends_are_calibrated(tmp_path_factory):
    # 20 stores × 2 claims (GC and test accuracy vs the GC penalty), no effect planted.
    hits, tests = null_hits(tmp_path_factory, trends, 20, sweeps=["gcreg"],
                            effects={"trend_slope": 0.0, "acc_slope": 0.0})
    assert tests == 40 and calibrated(hits, tests), (hits, tests)

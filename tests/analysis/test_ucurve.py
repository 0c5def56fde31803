from analysis import ucurve
from tests.analysis.conftest import build, calibrated, null_hits


def test_planted_u_is_found_with_its_tables(tmp_path):
    con = build(tmp_path, sweeps=["fig5"])
    a = ucurve.analyze(con)
    row = a.claims.row(0, named=True)
    assert row["verdict"] == "supported" and row["p_value"] < 0.05
    # test loss = 1 + 0.4 (GC − 1)²: the vertex is at GC = 1, inside its bootstrap CI.
    assert row["ci_low"] < 1.0 < row["ci_high"]
    assert a.tables["poly6"].columns == ["gc", "fit", "lo", "hi"] and a.tables["poly6"].height == 100
    assert (a.tables["poly6"]["lo"] <= a.tables["poly6"]["hi"]).all()
    assert a.tables["points"].columns == ["run_id", "width", "seed", "test_loss", "gc"]
    assert a.tables["points"].height == 36 and a.tables["lowess"].height == 36
    fits = a.tables["fits"].row(0, named=True)
    assert fits["slope_low"] < 0 < fits["slope_high"]


def test_monotone_curve_is_not_called_a_u(tmp_path):
    con = build(tmp_path, sweeps=["fig5"], effects={"fig5_peak": False})
    assert ucurve.analyze(con).claims["verdict"].to_list() == ["contradicted"]


def test_u_test_is_calibrated_on_flat_and_monotone_nulls(tmp_path_factory):
    flat = null_hits(tmp_path_factory, ucurve, 15, sweeps=["fig5"], seeds=2, effects={"fig5_flat": True})
    mono = null_hits(tmp_path_factory, ucurve, 15, sweeps=["fig5"], seeds=2, effects={"fig5_peak": False})
    hits, tests = flat[0] + mono[0], flat[1] + mono[1]
    assert tests == 30 and calibrated(hits, tests), (hits, tests)


def test_too_few_runs_is_insufficient(tmp_path):
    con = build(tmp_path, sweeps=["fig5"], seeds=1)
    a = ucurve.analyze(con)
    assert a.claims["verdict"].to_list() == ["insufficient data"] and a.tables["poly6"].is_empty()

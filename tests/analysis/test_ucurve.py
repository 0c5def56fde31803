from gclab.analysis import ucurve
from gclab.planted.store import sweep_runs
from tests._helpers.planted import assert_calibrated, build, null_counts, verdicts

N_FIG5 = len(sweep_runs("fig5"))


def test_planted_u_is_found_with_its_tables(tmp_path):
    con = build(tmp_path, sweeps=["fig5"])
    a = ucurve.analyze(con)
    row = a.claims.row(0, named=True)
    assert row["verdict"] == "supported" and row["p_value"] < 0.05
    assert row["kind"] == "paper" and "Fig. 5" in row["source"]
    # test loss = 1 + 0.4 (GC − 1)²: the vertex is at GC = 1, inside its bootstrap CI.
    assert row["ci_low"] < 1.0 < row["ci_high"]
    assert a.tables["poly6"].columns == ["gc", "fit", "lo", "hi"] and a.tables["poly6"].height == 100
    assert (a.tables["poly6"]["lo"] <= a.tables["poly6"]["hi"]).all()
    assert a.tables["points"].columns == ["run_id", "width", "seed", "test_loss", "gc"]
    assert a.tables["points"].height == N_FIG5 and a.tables["lowess"].height == N_FIG5
    fits = a.tables["fits"].row(0, named=True)
    assert fits["slope_low"] < 0 < fits["slope_high"]


def test_an_inverted_u_is_contradicted_and_no_u_is_inconclusive():
    assert verdicts(ucurve, sweeps=["fig5"], effects={"u_curvature": -0.4}) == ["contradicted"]
    # Test loss rising with GC everywhere is no U either way.
    assert verdicts(ucurve, sweeps=["fig5"], effects={"fig5_peak": 0.0, "u_curvature": 0.0}) == ["inconclusive"]


def test_u_test_is_calibrated_on_a_flat_null():
    counts = null_counts(ucurve, 40, sweeps=["fig5"], effects={"fig5_peak": 0.0, "u_curvature": 0.0})
    assert_calibrated(counts, 40)


def test_too_few_runs_is_insufficient(tmp_path):
    con = build(tmp_path, sweeps=["fig5"], seeds=1)
    a = ucurve.analyze(con)
    assert a.claims["verdict"].to_list() == ["insufficient data"] and a.tables["poly6"].is_empty()

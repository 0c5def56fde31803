import numpy as np
import pytest
import statsmodels.api as sm

from gclab.analysis import ucurve
from gclab.planted.store import sweep_runs
from tests._helpers.planted import assert_calibrated, build, null_counts, verdicts

N_FIG5 = len(sweep_runs("fig5"))
# A null whose GC spans three decades and whose high-GC arm has 10× the test-loss noise of the other.
HETERO_NULL = {"fig5_peak": 2.0, "u_curvature": 0.0, "fig5_noise_ratio": 10.0}


def test_planted_u_is_found_with_its_tables(tmp_path):
    con = build(tmp_path, sweeps=["fig5"])
    a = ucurve.analyze(con)
    row = a.claims.row(0, named=True)
    assert row["verdict"] == "supported" and row["p_value"] < 0.05
    assert row["kind"] == "paper" and "Fig. 5" in row["source"] and row["family"] == "gc:fig5"
    # value: the weaker arm's change of test loss in the U's direction, its CI above 0; δ = 10% of the mean loss.
    assert 0 < row["ci_low"] < row["value"] < row["ci_high"]
    assert row["delta"] == pytest.approx(0.1 * a.tables["points"]["test_loss"].mean())
    assert a.tables["poly6"].columns == ["gc", "fit", "lo", "hi"] and a.tables["poly6"].height == 100
    assert (a.tables["poly6"]["lo"] <= a.tables["poly6"]["hi"]).all()
    assert a.tables["points"].columns == ["run_id", "width", "seed", "test_loss", "gc"]
    assert a.tables["points"].height == N_FIG5 and a.tables["smooth"].height == N_FIG5
    fits = a.tables["fits"].row(0, named=True)
    # GC spans 30× (< two decades): a linear axis; test loss = 1 + 0.4 (GC − 1)² has its vertex at GC = 1.
    assert fits["axis"] == "linear" and fits["shape"] == "u"
    assert fits["slope_low"] < 0 < fits["slope_high"] and fits["vertex_lo"] < 1.0 < fits["vertex_hi"]
    assert fits["flat_lo"] <= fits["breakpoint"] <= fits["flat_hi"]


def test_an_inverted_u_is_contradicted_and_no_u_is_not_supported():
    assert verdicts(ucurve, sweeps=["fig5"], effects={"u_curvature": -0.4}) == ["contradicted"]
    # GC and test loss flat: no U either way; never supported or contradicted.
    assert verdicts(ucurve, sweeps=["fig5"], effects={"fig5_peak": 0.0, "u_curvature": 0.0})[0] in (
        "inconclusive",
        "absent",
    )


def test_gc_spanning_more_than_two_decades_is_read_on_a_log_axis():
    assert ucurve.gc_axis(np.array([1.0, 99.0])) == "linear"
    assert ucurve.gc_axis(np.array([1.0, 101.0])) == "log"
    assert ucurve.gc_axis(np.array([-1.0, 1e4])) == "linear"  # no log of a non-positive GC


def test_u_test_is_calibrated_on_a_flat_null():
    counts = null_counts(ucurve, 40, sweeps=["fig5"], effects={"fig5_peak": 0.0, "u_curvature": 0.0})
    assert_calibrated(counts, 40)


def test_u_test_is_calibrated_on_a_heteroscedastic_null_spanning_decades():
    counts = null_counts(ucurve, 40, sweeps=["fig5"], effects=HETERO_NULL)
    assert_calibrated(counts, 40)


def test_a_u_over_three_decades_with_unequal_arm_noise_is_found():
    """The case the pooled-variance test on linear GC missed (0 of 10 such stores before 3f6c777); HC3 on
    log GC finds it in most."""
    effects = {**HETERO_NULL, "u_curvature": 0.4}
    counts = null_counts(ucurve, 10, sweeps=["fig5"], effects=effects)
    assert counts["supported"] >= 7 and counts["contradicted"] == 0, counts


def _hc3_by_hand(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """HC3 standard errors (MacKinnon & White 1985) in float64 from the definitions."""
    bread = np.linalg.inv(X.T @ X)
    beta = bread @ X.T @ y
    e = y - X @ beta
    h = np.einsum("ij,jk,ik->i", X, bread, X)
    meat = X.T @ (X * (e**2 / (1 - h) ** 2)[:, None])
    return np.sqrt(np.diag(bread @ meat @ bread))


def test_each_line_uses_hc3_standard_errors_and_its_own_breakpoint_side():
    rng = np.random.default_rng(3)
    x = np.sort(rng.uniform(0, 10, 40))
    y = np.abs(x - 4) + rng.normal(0, 0.1 + 0.3 * (x > 4), 40)  # noisier right arm
    xc = x[15]
    for which, high in ((1, x > xc), (2, x >= xc)):
        X = np.column_stack([np.ones_like(x), np.where(high, 0, x - xc), np.where(high, x - xc, 0), high])
        got = ucurve._line(x, y, xc, which=which)
        se = _hc3_by_hand(X, y)[which]
        beta = np.linalg.lstsq(X, y, rcond=None)[0][which]
        assert got["slope"] == pytest.approx(beta, rel=1e-10) and got["se"] == pytest.approx(se, rel=1e-10)
        assert got["df"] == len(x) - 4


def test_smoother_tends_to_the_least_squares_line_and_its_band_on_straight_data():
    rng = np.random.default_rng(4)
    x = np.linspace(0, 1, 60)
    y = 2 * x + rng.normal(0, 0.2, 60)
    fitted, se = ucurve.smoother(x, y)
    ols = sm.OLS(y, sm.add_constant(x)).fit()
    np.testing.assert_allclose(fitted, ols.fittedvalues, atol=0.02)
    np.testing.assert_allclose(se, ols.get_prediction().se_mean, rtol=0.15)


def test_smoother_bins_a_large_store_and_reads_the_same_curve(monkeypatch):
    """Above SMOOTHER_BINS distinct x the runs are pooled into quantile bins: the curve, its band and the
    two-lines test match the unbinned smoother's on the same 1,500 runs."""
    rng = np.random.default_rng(6)
    x = rng.uniform(-1, 1, 1_500)
    y = x**2 + rng.normal(0, 0.1 + 0.2 * (x > 0), x.size)  # the two arms' noise differs
    assert np.unique(x).size > ucurve.SMOOTHER_BINS
    binned, binned_se = ucurve.smoother(x, y)
    binned_test = ucurve.two_lines(x, y)
    monkeypatch.setattr(ucurve, "SMOOTHER_BINS", 10**6)
    exact, exact_se = ucurve.smoother(x, y)
    np.testing.assert_allclose(binned, exact, atol=0.02)
    np.testing.assert_allclose(binned_se, exact_se, rtol=0.1)
    exact_test = ucurve.two_lines(x, y)
    assert binned_test["shape"] == exact_test["shape"] == "u"
    assert binned_test["breakpoint"] == pytest.approx(exact_test["breakpoint"], abs=0.1)
    assert binned_test["p_shape"] < 1e-6 and exact_test["p_shape"] < 1e-6


def test_robin_hood_breakpoint_is_the_z_weighted_quantile_of_the_flat_region():
    rng = np.random.default_rng(5)
    x = np.sort(rng.uniform(-1, 1, 80))
    y = x**2 + rng.normal(0, 0.05, 80)
    r = ucurve.two_lines(x, y)
    fitted, se = ucurve.smoother(x, y)
    middle = (x > np.quantile(x, 0.1)) & (x < np.quantile(x, 0.9))
    flat = x[middle][(fitted - se)[middle] < fitted[middle].min()]
    mid = np.median(flat)
    z1, z2 = (abs(ucurve._line(x, y, mid, which=k)["t"]) for k in (1, 2))
    assert r["shape"] == "u" and r["breakpoint"] == pytest.approx(np.quantile(flat, z2 / (z1 + z2)))
    assert r["slope_low"] < 0 < r["slope_high"] and r["p_shape"] < 0.05


def test_too_few_runs_is_insufficient(tmp_path):
    con = build(tmp_path, sweeps=["fig5"], seeds=1)
    a = ucurve.analyze(con)
    assert a.claims["verdict"].to_list() == ["insufficient data"] and a.tables["poly6"].is_empty()
    assert a.claims["family"].to_list() == ["gc:fig5"]

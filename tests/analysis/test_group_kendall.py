import math
import warnings

import numpy as np
import polars as pl
import pytest
from scipy import stats

from gclab.analysis import group_kendall, measures
from gclab.analysis.run_summary import HYPER_COLUMNS
from gclab.store.db import query
from tests._helpers.planted import memory


def scipy_tau(x, y) -> float:
    """The reference: scipy's τ-b over the rows where both are finite, NaN below 2 rows."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.kendalltau(x[ok], y[ok]).statistic)


def random_groups(seed: int, n_groups: int, max_size: int) -> pl.DataFrame:
    """Groups of 0..max_size rows, values from small sets (ties), NaN/inf/null cells, constant groups."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        size = int(rng.integers(1, max_size + 1))
        x = rng.integers(0, 4, size).astype(float) * 0.1 + (g % 3) * 1e6
        y = rng.normal(size=size).round(int(rng.integers(0, 3)))
        if g % 7 == 0:
            x[:] = x[0]  # constant x → NaN
        if g % 11 == 0:
            y[:] = 2.5  # constant y → NaN
        bad = rng.random(size) < 0.1
        x[bad] = rng.choice([np.nan, np.inf, -np.inf], bad.sum())
        rows += [{"a": f"k{g % 5}", "b": g, "x": xi, "y": None if rng.random() < 0.05 else yi} for xi, yi in zip(x, y)]
    return pl.DataFrame(rows, schema={"a": pl.String, "b": pl.Int64, "x": pl.Float64, "y": pl.Float64})


def expected(df: pl.DataFrame) -> dict[tuple, float]:
    out = {}
    for key, g in df.group_by(["a", "b"]):
        x, y = g["x"].to_numpy(), g["y"].cast(pl.Float64).to_numpy()
        if (np.isfinite(x) & np.isfinite(y)).sum() >= 2:
            out[key] = scipy_tau(x, y)
    return out


def assert_equal_taus(got: pl.DataFrame, want: dict[tuple, float]) -> None:
    have = {(r["a"], r["b"]): r["tau"] for r in got.iter_rows(named=True)}
    assert have.keys() == want.keys()
    for key, tau in want.items():
        assert (math.isnan(tau) and math.isnan(have[key])) or abs(have[key] - tau) <= 1e-12, key


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_scipy_on_random_groups_with_ties_nans_and_constants(seed):
    df = random_groups(seed, 400, 12)
    got = group_kendall.group_tau_b(df, by=["a", "b"], x="x", y="y")
    want = expected(df)
    assert_equal_taus(got, want)
    assert any(math.isnan(t) for t in want.values()) and any(not math.isnan(t) for t in want.values())
    assert got.select("a", "b").rows() == sorted(got.select("a", "b").rows())


def test_groups_above_the_pairwise_size_match_scipy_too(monkeypatch):
    # a handful of rows above the cut, so both paths run in one call
    monkeypatch.setattr(group_kendall, "PAIRWISE_MAX", 6)
    df = random_groups(4, 120, 14)
    assert df.group_by("a", "b").len()["len"].max() > 6
    assert_equal_taus(group_kendall.group_tau_b(df, by=["a", "b"], x="x", y="y"), expected(df))


def test_no_group_with_two_finite_rows_gives_an_empty_frame():
    df = pl.DataFrame({"a": ["u", "u", "v"], "b": [1, 1, 2], "x": [1.0, float("nan"), 3.0], "y": [1.0, 2.0, 3.0]})
    got = group_kendall.group_tau_b(df, by=["a", "b"], x="x", y="y")
    assert got.height == 0 and got.columns == ["a", "b", "tau"]


def loop_granulated(runs: pl.DataFrame, ms: list[str], axes: list[str]) -> dict[tuple[str, str], tuple]:
    """The former per-group loop: scipy τ per group of `measures.axis_groups`, mean of the defined ones."""
    out = {}
    for axis in axes:
        groups = measures.axis_groups(runs, axis, axes)
        for m in ms:
            taus = np.array([scipy_tau(g[m].cast(pl.Float64).to_numpy(), g["gen_gap"].to_numpy()) for g in groups])
            taus = taus[np.isfinite(taus)]
            out[(m, axis)] = (float(taus.mean()) if taus.size else None, int(taus.size))
    return out


def test_granulated_equals_the_per_group_scipy_loop_on_a_planted_store():
    con = memory(sweeps=["fig1", "fig3", "fig4", "gcreg", "igr"], effects={"measure_corr": 0.5})
    runs = query(con, measures._SQL)
    axes = measures.varying_axes(runs, HYPER_COLUMNS)
    assert len(axes) >= 4 and runs.height > 100
    got = measures.granulated(runs, measures.MEASURES, axes)
    want = loop_granulated(runs, measures.MEASURES, axes)
    assert sum(n for _, n in want.values()) > 20
    for r in got.iter_rows(named=True):
        psi, n = want[(r["measure"], r["axis"])]
        assert r["n_groups"] == n
        assert (psi is None and r["psi"] is None) or abs(r["psi"] - psi) <= 1e-12

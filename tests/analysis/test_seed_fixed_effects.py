import warnings

import numpy as np
import polars as pl
import pytest
import statsmodels.api as sm
from scipy import stats

from gclab.analysis import trends
from gclab.analysis.result import ALPHA
from gclab.analysis.seed_fixed_effects import hc3_cov, seed_fixed_effects_ols


def dummy_trend(df: pl.DataFrame, *, direction: int, log: bool) -> dict:
    """Brute-force reference: `trends.seed_trend` as an OLS with one dummy column per seed and family."""
    y = pl.col("y").log() if log else pl.col("y")
    df = df.filter(
        pl.col("y").is_not_null() & pl.col("x").is_not_null() & (pl.col("y") > 0 if log else pl.lit(True))
    ).with_columns(y.alias("ly"))
    df = df.filter(pl.col("ly").is_finite()).with_columns(
        (pl.col("x").rank("dense") - 1).cast(pl.Float64).alias("level")
    )
    dummies = df.select(pl.col("seed").cast(pl.String), "family").to_dummies(drop_first=True)
    X = np.column_stack([np.ones(df.height), df["level"].to_numpy(), dummies.to_numpy().astype(float)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho, rho_p = stats.spearmanr(df["x"].to_numpy(), df["ly"].to_numpy())
        fit = sm.OLS(df["ly"].to_numpy(), X).fit()
    slope, p2 = float(fit.params[1]), float(fit.pvalues[1])
    lo, hi = (float(v) for v in fit.conf_int(ALPHA)[1])
    span = df["x"].n_unique() - 1
    return {
        "n_runs": df.height,
        "n_seeds": df["seed"].n_unique(),
        "n_levels": df["x"].n_unique(),
        "spearman_rho": float(rho),
        "spearman_p": float(rho_p),
        "slope": slope,
        "slope_lo": lo,
        "slope_hi": hi,
        "p_two_sided": p2,
        "p_one_sided": p2 / 2 if np.sign(slope) == direction else 1 - p2 / 2,
        "se": float(fit.bse[1]),
        "df": float(fit.df_resid),
        "agrees": bool(np.sign(slope) == direction),
        "effect_ratio": float(np.exp(slope * span)) if log else slope * span,
        "reason": None,
    }


def random_frame(seed: int, *, n_seeds: int, families: list[str]) -> pl.DataFrame:
    """Unbalanced seeds (1–12 runs each), a geometric grid with a zero baseline, seed and family offsets."""
    rng = np.random.default_rng(seed)
    grid = [0.0, 1e-4, 1e-3, 1e-2, 1e-1]
    offsets = {f: rng.normal() for f in families}
    rows = []
    for s in range(n_seeds):
        shift = rng.normal(scale=0.5)
        for _ in range(int(rng.integers(1, 13))):
            level = int(rng.integers(0, len(grid)))
            fam = families[int(rng.integers(0, len(families)))]
            ly = 0.3 * level + shift + offsets[fam] + rng.normal(scale=0.4)
            y = None if rng.random() < 0.03 else float(np.exp(ly)) * (1 if rng.random() > 0.02 else -1)
            rows.append({"run_id": f"r{len(rows)}", "seed": 100 + 7 * s, "x": grid[level], "y": y, "family": fam})
    return pl.DataFrame(
        rows, schema={"run_id": pl.String, "seed": pl.Int64, "x": pl.Float64, "y": pl.Float64, "family": pl.String}
    )


FAMILIES = [[""], ["he_normal/relu", "he_normal/tanh", "lecun_normal/relu"]]


@pytest.mark.parametrize("families", FAMILIES, ids=["one family", "pooled families"])
@pytest.mark.parametrize(("seed", "n_seeds", "log"), [(0, 2, True), (1, 5, True), (2, 40, False), (3, 150, True)])
def test_seed_trend_equals_the_dummy_variable_regression(seed, n_seeds, log, families):
    df = random_frame(seed, n_seeds=n_seeds, families=families)
    got = trends.seed_trend(df, direction=-1, log=log)
    want = dummy_trend(df, direction=-1, log=log)
    assert got["reason"] is None and got.keys() == want.keys()
    for k, v in want.items():
        if isinstance(v, float):
            assert got[k] == pytest.approx(v, rel=1e-10, abs=1e-10), k
        else:
            assert got[k] == v, k


def test_helper_equals_dummies_when_a_family_lives_in_one_seed_only():
    # the family dummy is then collinear with that seed's: dropped from the rank, the slope still identified
    df = random_frame(7, n_seeds=6, families=["a", "b"]).with_columns(
        pl.when(pl.col("seed") == 100).then(pl.lit("c")).otherwise("family").alias("family")
    )
    df = df.filter(pl.col("y") > 0)
    level = df["x"].rank("dense").cast(pl.Float64).to_numpy()
    fams = df.select("family").to_dummies(drop_first=True).to_numpy().astype(float)
    seeds = df.select(pl.col("seed").cast(pl.String)).to_dummies(drop_first=True).to_numpy().astype(float)
    ly = np.log(df["y"].to_numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        brute = sm.OLS(ly, np.column_stack([np.ones(df.height), level, fams, seeds])).fit()
        fit = seed_fixed_effects_ols(ly, np.column_stack([level, fams]), df["seed"])
    assert fit.df_resid == brute.df_resid
    for got, want in [(fit.params, brute.params), (fit.bse, brute.bse), (fit.pvalues, brute.pvalues)]:
        assert got[0] == pytest.approx(want[1], rel=1e-10, abs=1e-12)
    assert fit.conf_int(ALPHA)[0] == pytest.approx(brute.conf_int(ALPHA)[1], rel=1e-10)


def test_too_few_runs_for_the_fixed_effects_are_insufficient():
    df = random_frame(5, n_seeds=3, families=[""]).head(6)
    out = trends.seed_trend(df.with_columns(pl.col("y").abs()), direction=1, log=False)
    assert out["reason"] is not None and out.get("slope") is None


@pytest.mark.parametrize(("seed", "n_seeds"), [(0, 3), (1, 8), (2, 30)])
def test_hc3_equals_the_dummy_variable_regressions_hc3(seed, n_seeds):
    # unbalanced seeds (a seed of one run has leverage 1 and adds nothing), noise growing with the level
    df = random_frame(seed, n_seeds=n_seeds, families=["a", "b"]).filter(pl.col("y") > 0)
    rng = np.random.default_rng(seed)
    level = df["x"].rank("dense").cast(pl.Float64).to_numpy()
    ly = np.log(df["y"].to_numpy()) + level * rng.normal(scale=0.3, size=df.height)
    fams = df.select("family").to_dummies(drop_first=True).to_numpy().astype(float)
    seeds = df.select(pl.col("seed").cast(pl.String)).to_dummies(drop_first=True).to_numpy().astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        brute = sm.OLS(ly, np.column_stack([np.ones(df.height), level, fams, seeds])).fit(cov_type="HC3")
        fit = seed_fixed_effects_ols(ly, np.column_stack([level, fams]), df["seed"])
    k = 1 + fams.shape[1]
    got, want = hc3_cov(fit, df["seed"]), brute.cov_params()[1 : 1 + k, 1 : 1 + k]
    assert np.isfinite(want).all() and not np.allclose(want, fit.cov_params(), rtol=0.05)  # robust ≠ pooled here
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-14)

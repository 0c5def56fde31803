"""Fig. 5 (right): across fig5 runs, test loss against GC is U-shaped.

Axes: the paper "recovers the traditional U-shape of complexity measures", i.e. test loss
(y) as a function of complexity (x = GC of a run). Read the other way the relation is not even
a function (both under-fitted small nets and the interpolation peak have high test loss).

- `poly6`: the paper's degree-6 polynomial, OLS (statsmodels) with 95% mean-confidence bands
  on a grid of GC (x standardized first so the Vandermonde design is well conditioned).
- quadratic fit with a percentile bootstrap CI of its vertex (scipy.stats.bootstrap over runs).
- the formal test, Simonsohn (2018) two-lines: breakpoint at the LOWESS minimum (centre of its
  flat region), moved by the Robin Hood rule, then one interrupted OLS regression; a U needs
  a significantly negative first line and a significantly positive second line (two-sided
  p < α each); p_value = the larger of the two, an intersection–union test.

Verdicts (`analysis.verdict.decide`): the same test on −test loss (breakpoint at the LOWESS
maximum) tests the inverted U (∩), the shape against the claim. A significant U → supported, a
significant ∩ → contradicted, neither (one line flat, a monotone relation) → inconclusive;
p_value = the smaller of the two tests' p (each line's two-sided test puts ≤ α/2 on one sign,
so each shape's false-positive rate is ≤ α/2); fewer than `MIN_RUNS` runs or 2 seeds →
insufficient data.
- `lowess`: statsmodels LOWESS trend of test loss on GC.
"""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import statsmodels.api as sm
from scipy import stats
from statsmodels.nonparametric.smoothers_lowess import lowess

from gclab.analysis.deltas import declared
from gclab.analysis.double_descent import GC_COLUMN
from gclab.analysis.result import ALPHA, Analysis, claim, claims_frame, insufficient
from gclab.analysis.run_summary import with_runs
from gclab.analysis.verdict import decide
from gclab.store.db import query

CLAIM = "test loss is U-shaped in GC across widths (Fig. 5 right)"
PAPER = {"kind": "paper", "source": "GC paper §6, Fig. 5 right", "family": declared("fig5:ucurve")["family"]}
MIN_RUNS, MIN_SIDE = 8, 3  # poly6 has 7 parameters; each line of the two-lines test ≥ 3 points

_SQL = with_runs(f"""
SELECT run_id, width, seed, test_loss, {GC_COLUMN} AS gc FROM rs
WHERE sweep = 'fig5' AND test_loss IS NOT NULL AND {GC_COLUMN} IS NOT NULL AND isfinite(test_loss)
  AND isfinite({GC_COLUMN})
ORDER BY gc
""")


def poly6(x: np.ndarray, y: np.ndarray, grid: np.ndarray) -> pl.DataFrame:
    mu, sd = x.mean(), x.std() or 1.0
    design = lambda v: np.vander((v - mu) / sd, 7, increasing=True)  # noqa: E731
    fit = sm.OLS(y, design(x)).fit()
    band = fit.get_prediction(design(grid)).conf_int(alpha=ALPHA)
    return pl.DataFrame({"gc": grid, "fit": fit.predict(design(grid)), "lo": band[:, 0], "hi": band[:, 1]})


def quadratic_vertex(x: np.ndarray, y: np.ndarray, seed: int = 0) -> dict:
    """Vertex −b1/(2 b2) of the OLS quadratic, and its percentile bootstrap CI (resampling runs)."""
    mu, sd = x.mean(), x.std() or 1.0

    def vertex(xs, ys, axis=-1):  # vectorized over resamples: least squares on standardized x
        z = (xs - mu) / sd
        c = (np.linalg.pinv(np.stack([np.ones_like(z), z, z**2], -1)) @ ys[..., None])[..., 0]
        return mu - sd * c[..., 1] / (2 * c[..., 2])

    fit = sm.OLS(y, np.vander(x, 3, increasing=True)).fit()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        boot = stats.bootstrap(
            (x, y),
            vertex,
            paired=True,
            vectorized=True,
            n_resamples=999,
            batch=200,
            method="percentile",
            confidence_level=1 - ALPHA,
            rng=np.random.default_rng(seed),
        )
    return {
        "b2": float(fit.params[2]),
        "b2_p": float(fit.pvalues[2]),
        "vertex": float(-fit.params[1] / (2 * fit.params[2])),
        "vertex_lo": float(boot.confidence_interval.low),
        "vertex_hi": float(boot.confidence_interval.high),
    }


def _two_lines_fit(x: np.ndarray, y: np.ndarray, xc: float):
    high = x > xc
    X = np.column_stack([np.ones_like(x), np.where(high, 0, x - xc), np.where(high, x - xc, 0), high])
    return sm.OLS(y, X).fit()


def two_lines(x: np.ndarray, y: np.ndarray, smooth: np.ndarray) -> dict:
    """Simonsohn's two-lines test for a U (decreasing, then increasing). `x` sorted; `smooth` = LOWESS of y."""
    lo_bound, hi_bound = x[MIN_SIDE - 1], x[-MIN_SIDE - 1]  # each line keeps ≥ MIN_SIDE points
    inside = (x >= lo_bound) & (x <= hi_bound)
    if not inside.any():
        return {"reason": "too few distinct GC values for two lines"}
    # Flat region: points whose smoothed value is within 5% of the smoother's range of its minimum.
    s_in = smooth[inside]
    flat = x[inside][s_in <= s_in.min() + 0.05 * (smooth.max() - smooth.min())]
    first = _two_lines_fit(x, y, float(np.median(flat)))
    z1, z2 = abs(first.tvalues[1]), abs(first.tvalues[2])
    # Robin Hood: give the weaker line more points, in proportion to the stronger line's z.
    q = z2 / (z1 + z2) if np.isfinite(z1 + z2) and z1 + z2 > 0 else 0.5
    xc = float(np.quantile(flat, q))
    fit = _two_lines_fit(x, y, xc)
    b1, b2 = float(fit.params[1]), float(fit.params[2])
    p1, p2 = float(fit.pvalues[1]), float(fit.pvalues[2])
    u = b1 < 0 < b2 and max(p1, p2) < ALPHA
    return {
        "breakpoint": xc,
        "slope_low": b1,
        "p_low": p1,
        "slope_high": b2,
        "p_high": p2,
        "p_u": max(p1, p2) if b1 < 0 < b2 else 1.0,
        "u": u,
        "reason": None,
    }


def analyze(con) -> Analysis:
    pts = query(con, _SQL)
    n_runs, n_seeds = pts.height, pts["seed"].n_unique()
    method = (
        "Simonsohn two-lines test (LOWESS breakpoint + Robin Hood, interrupted OLS); "
        "p = max of the two lines' p-values; value = vertex of the OLS quadratic with its "
        "percentile bootstrap 95% CI"
    )
    empty = {
        "points": pts,
        "poly6": pl.DataFrame(schema={"gc": pl.Float64, "fit": pl.Float64, "lo": pl.Float64, "hi": pl.Float64}),
        "lowess": pl.DataFrame(schema={"gc": pl.Float64, "test_loss": pl.Float64}),
        "fits": pl.DataFrame(),
    }
    if n_runs < MIN_RUNS or pts["gc"].n_unique() < 2 * MIN_SIDE or n_seeds < 2:
        why = f"needs ≥ {MIN_RUNS} completed fig5 runs over ≥ 2 seeds; have {n_runs} runs, {n_seeds} seeds"
        return Analysis(
            "ucurve",
            empty,
            claims_frame([insufficient(CLAIM, "fig5", method, why, n_runs=n_runs, n_seeds=n_seeds, **PAPER)]),
        )
    x, y = pts["gc"].to_numpy(), pts["test_loss"].to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        smooth = lowess(y, x, frac=2 / 3, return_sorted=False)
    grid = np.linspace(x.min(), x.max(), 100)
    tl = two_lines(x, y, smooth)
    cap = two_lines(x, -y, -smooth)  # an inverted U of y is a U of −y
    quad = quadratic_vertex(x, y)
    fits = pl.DataFrame(
        [
            {
                **{k: v for k, v in tl.items() if k != "reason"},
                **quad,
                "p_inverted_u": cap.get("p_u"),
                "inverted_u_breakpoint": cap.get("breakpoint"),
            }
        ]
    )
    tables = {
        "points": pts,
        "poly6": poly6(x, y, grid),
        "lowess": pl.DataFrame({"gc": x, "test_loss": smooth}),
        "fits": fits,
    }
    if tl["reason"]:
        return Analysis(
            "ucurve",
            tables,
            claims_frame([insufficient(CLAIM, "fig5", method, tl["reason"], n_runs=n_runs, n_seeds=n_seeds, **PAPER)]),
        )
    stat = (
        f"{method}; breakpoint GC {tl['breakpoint']:.3g}; low slope {tl['slope_low']:.3g} "
        f"(p={tl['p_low']:.3g}), high slope {tl['slope_high']:.3g} "
        f"(p={tl['p_high']:.3g})"
    )
    p_cap = cap["p_u"] if not cap["reason"] else 1.0
    p = min(tl["p_u"], p_cap)
    stat += f"; inverted-U test p = {p_cap:.3g}"
    row = claim(
        CLAIM,
        "fig5",
        stat,
        decide(p, tl["p_u"] <= p_cap),
        **PAPER,
        value=quad["vertex"],
        p_value=p,
        ci=(quad["vertex_lo"], quad["vertex_hi"]),
        n_runs=n_runs,
        n_seeds=n_seeds,
    )
    return Analysis("ucurve", tables, claims_frame([row]))

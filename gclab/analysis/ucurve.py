"""Fig. 5 (right): across fig5 runs, test loss against GC is U-shaped.

Axes: the paper "recovers the traditional U-shape of complexity measures", i.e. test loss
(y) as a function of complexity (x = GC of a run). Read the other way the relation is not even
a function (both under-fitted small nets and the interpolation peak have high test loss).

The GC axis (`gc_axis`, docs/EXPERIMENTS.md "The U-curve test"): log GC when the runs' GC spans
more than `LOG_DECADES` decades (max/min > 10²), linear GC otherwise; one rule, fixed before any
data, applied to the test and the pictures alike.

The test is Simonsohn's (2018, "Two lines: a valid alternative to the invalid testing of U-shaped
relationships with quadratic regressions") two-lines test, as published:
1. a smoother of y on x (here scipy's cubic smoothing spline with its penalty chosen by GCV,
   standing in for the paper's penalized cubic-spline GAM) gives ŷ and its standard error;
2. the OLS quadratic's slope at the smallest x says which shape to look for: ≤ 0 a U (the lowest
   ŷ), > 0 an inverted U (the highest ŷ);
3. among x strictly inside the 10th–90th percentiles, the flat region is the x whose ŷ ∓ se
   reaches past that extreme ŷ;
4. an interrupted regression with its breakpoint at the flat region's median gives the two
   lines' |z|; Robin Hood moves the breakpoint to the z₂/(z₁ + z₂) quantile of the flat region
   (more points for the weaker line);
5. two interrupted OLS regressions at that breakpoint (the breakpoint in the first line, then
   in the second) give the first line's and the second line's slopes, each with HC3
   heteroscedasticity-robust standard errors (statsmodels `cov_type="HC3"`, t with the
   residual df), because the noise of the two arms differs by orders of magnitude.
A shape is significant when the slopes have its signs and both two-sided p < α (an
intersection–union test: p = the larger p).

Verdicts (`analysis.verdict`): a significant U → supported; a significant inverted U (the shape
against the claim) → contradicted; otherwise, TOST of the arms' changes within ±δ (δ: 10% of the
mean test loss, `analysis.deltas`), Bonferroni over the two arms → absent (one arm is flat, so no
U of that size); else inconclusive with the seeds for 80% power. value = the signed change of
test loss along the weaker arm (larger p), positive in the U's direction: −b₁·(x_c − x_min) or
b₂·(x_max − x_c), CI from its slope's robust CI. Fewer than `MIN_RUNS` runs or 2 seeds →
insufficient data.

Pictures only (they decide nothing): `poly6`, the paper's degree-6 polynomial (OLS, 95% mean
band) on the same axis; `smooth`, the smoother of step 1; `fits`, the two lines and the OLS
quadratic's vertex with its percentile bootstrap CI.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import polars as pl
import statsmodels.api as sm
from scipy import stats
from scipy.interpolate import make_smoothing_spline

from gclab.analysis.deltas import declared
from gclab.analysis.double_descent import GC_COLUMN
from gclab.analysis.result import ABSENT, ALPHA, INCONCLUSIVE, Analysis, claim, claims_frame, insufficient
from gclab.analysis.run_summary import with_runs
from gclab.analysis.verdict import decide, describe, seeds_for_power, tost_p
from gclab.store.db import query

CLAIM = "test loss is U-shaped in GC across widths (Fig. 5 right)"
PAPER = {"kind": "paper", "source": "GC paper §6, Fig. 5 right"}
SPEC = "fig5:ucurve"
MIN_RUNS, MIN_SIDE = 8, 3  # poly6 has 7 parameters; each line of the two-lines test ≥ 3 points
LOG_DECADES = 2.0  # GC spanning more decades than this is read on a log axis
PENALTIES = np.logspace(-9, 1, 21)  # smoothing-spline penalties searched by GCV (x scaled to [0, 1])
# The smoother's hat matrix is (distinct x)²: above this many distinct x, runs are pooled into this many
# quantile bins of x (the pooling tied x get, widened; docs/EXPERIMENTS.md "The U-curve test"). A real
# fig5 store has 51–75 runs, so only stores of thousands of runs are binned; 10⁴ runs took 4 min, 10⁴ bins.
SMOOTHER_BINS = 400

_SQL = with_runs(f"""
SELECT run_id, width, seed, test_loss, {GC_COLUMN} AS gc FROM rs
WHERE sweep = 'fig5' AND test_loss IS NOT NULL AND {GC_COLUMN} IS NOT NULL AND isfinite(test_loss)
  AND isfinite({GC_COLUMN})
ORDER BY gc, run_id
""")


def gc_axis(gc: np.ndarray) -> str:
    """ "log" when positive GC spans more than LOG_DECADES decades, else "linear" (docs/EXPERIMENTS.md)."""
    if gc.min() > 0 and math.log10(gc.max() / gc.min()) > LOG_DECADES:
        return "log"
    return "linear"


def poly6(x: np.ndarray, y: np.ndarray, grid: np.ndarray) -> pl.DataFrame:
    """The paper's degree-6 least-squares polynomial with its 95% mean band on `grid` (x standardized)."""
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
        "b1": float(fit.params[1]),
        "b2": float(fit.params[2]),
        "b2_p": float(fit.pvalues[2]),
        "vertex": float(-fit.params[1] / (2 * fit.params[2])),
        "vertex_lo": float(boot.confidence_interval.low),
        "vertex_hi": float(boot.confidence_interval.high),
    }


def smoother(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ŷ, se of ŷ) at each x (shape (n,) each) from a cubic smoothing spline, penalty by GCV.

    Tied x are pooled into their mean with weight = count (above `SMOOTHER_BINS` distinct x, the runs
    of each of that many quantile bins of x are, at the bin's mean x), x is scaled to [0, 1]. The
    spline is linear in y, ŷ = H ȳ, so one scipy call per penalty smooths ȳ and the unit vectors
    together (H's columns); the penalty minimizes GCV = N·RSS/(N − tr H)² over `PENALTIES`, and
    se = σ̂·√(Σ_k H_ik² / w_k) with σ̂² = RSS / (N − tr H)."""
    xu, inv, w = np.unique(x, return_inverse=True, return_counts=True)
    if len(xu) > SMOOTHER_BINS:
        edges = np.quantile(x, np.linspace(0, 1, SMOOTHER_BINS + 1)[1:-1])
        _, inv, w = np.unique(np.searchsorted(edges, x, side="right"), return_inverse=True, return_counts=True)
        xu = np.bincount(inv, weights=x) / w
    yu = np.bincount(inv, weights=y) / w
    z = (xu - xu[0]) / (xu[-1] - xu[0])
    stack = np.column_stack([yu, np.eye(len(xu))])
    best = None
    for lam in PENALTIES:
        out = make_smoothing_spline(z, stack, w=w.astype(float), lam=lam, axis=0)(z)
        fitted, H = out[:, 0], out[:, 1:]
        dof = len(y) - float(np.trace(H))
        rss = float(np.sum((y - fitted[inv]) ** 2))
        gcv = len(y) * rss / max(dof, 1e-9) ** 2
        if best is None or gcv < best[0]:
            best = (gcv, fitted, H, dof, rss)
    assert best is not None  # the loop ran over at least one smoothing level
    _, fitted, H, dof, rss = best
    se = np.sqrt(rss / max(dof, 1.0) * (H**2 / w).sum(1))
    return fitted[inv], se[inv]


def _line(x: np.ndarray, y: np.ndarray, xc: float, *, which: int) -> dict:
    """One line of Simonsohn's interrupted regression at `xc` with HC3 standard errors.

    which = 1: the first line, x ≤ xc (xc in the first line); which = 2: the second, x ≥ xc."""
    high = x > xc if which == 1 else x >= xc
    X = np.column_stack([np.ones_like(x), np.where(high, 0.0, x - xc), np.where(high, x - xc, 0.0), high])
    fit = sm.OLS(y, X).fit(cov_type="HC3", use_t=True)
    k = which  # column 1 is the low slope, column 2 the high slope
    return {
        "slope": float(fit.params[k]),
        "se": float(fit.bse[k]),
        "t": float(fit.tvalues[k]),
        "p": float(fit.pvalues[k]),
        "df": float(fit.df_resid),
    }


def two_lines(x: np.ndarray, y: np.ndarray) -> dict:
    """Simonsohn's two-lines test with the Robin Hood breakpoint (module docstring, steps 1–5)."""
    if np.unique(x).size < 2 * MIN_SIDE:
        return {"reason": "too few distinct GC values for two lines"}
    fitted, se = smoother(x, y)
    q = sm.OLS(y, np.vander(x, 3, increasing=True)).fit().params
    shape = "inverted_u" if q[1] + 2 * q[2] * x.min() > 0 else "u"
    middle = (x > np.quantile(x, 0.1)) & (x < np.quantile(x, 0.9))
    if not middle.any():
        return {"reason": "no GC value strictly inside the 10th–90th percentiles"}
    xm, ym, sm_ = x[middle], fitted[middle], se[middle]
    flat = xm[ym + sm_ > ym.max()] if shape == "inverted_u" else xm[ym - sm_ < ym.min()]
    mid = float(np.median(flat))
    z1, z2 = abs(_line(x, y, mid, which=1)["t"]), abs(_line(x, y, mid, which=2)["t"])
    share = z2 / (z1 + z2) if np.isfinite(z1 + z2) and z1 + z2 > 0 else 0.5
    xc = float(np.quantile(flat, share))
    if (x <= xc).sum() < MIN_SIDE or (x >= xc).sum() < MIN_SIDE:
        return {"reason": f"the breakpoint leaves fewer than {MIN_SIDE} runs on one line"}
    low, high = _line(x, y, xc, which=1), _line(x, y, xc, which=2)
    sign = -1 if shape == "u" else 1  # the first line's sign under the shape looked for
    significant = np.sign(low["slope"]) == sign and np.sign(high["slope"]) == -sign
    p = max(low["p"], high["p"]) if significant else 1.0
    return {
        "shape": shape,
        "breakpoint": xc,
        "flat_lo": float(flat.min()),
        "flat_hi": float(flat.max()),
        "midflat": mid,
        "slope_low": low["slope"],
        "se_low": low["se"],
        "p_low": low["p"],
        "df_low": low["df"],
        "slope_high": high["slope"],
        "se_high": high["se"],
        "p_high": high["p"],
        "df_high": high["df"],
        "p_shape": p,
        "reason": None,
        "smooth": fitted,
        "smooth_se": se,
    }


def arm_effects(tl: dict, x: np.ndarray) -> list[dict]:
    """Each arm's change of test loss in the U's direction (positive = U), its se and df."""
    lengths = (tl["breakpoint"] - x.min(), x.max() - tl["breakpoint"])
    return [
        {"arm": arm, "change": sign * tl[f"slope_{arm}"] * n, "se": tl[f"se_{arm}"] * n, "df": tl[f"df_{arm}"]}
        for arm, sign, n in (("low", -1.0, lengths[0]), ("high", 1.0, lengths[1]))
    ]


def analyze(con) -> Analysis:
    pts = query(con, _SQL)
    n_runs, n_seeds = pts.height, pts["seed"].n_unique()
    method = (
        "Simonsohn two-lines test (smoothing-spline flat region, Robin Hood breakpoint, interrupted OLS "
        "with HC3 robust t-tests); shape from the quadratic's slope at the smallest GC; p = the larger of the "
        "two lines' p; value = the weaker arm's change of test loss in the U's direction (95% CI)"
    )
    empty = {
        "points": pts,
        "poly6": pl.DataFrame(schema={"gc": pl.Float64, "fit": pl.Float64, "lo": pl.Float64, "hi": pl.Float64}),
        "smooth": pl.DataFrame(schema={"gc": pl.Float64, "test_loss": pl.Float64, "se": pl.Float64}),
        "fits": pl.DataFrame(),
    }
    mean_loss = float(pts["test_loss"].mean()) if n_runs else float("nan")
    spec = {**PAPER, **declared(SPEC, unit=mean_loss)} if n_runs else {**PAPER, "family": declared(SPEC)["family"]}
    kw = {"n_runs": n_runs, "n_seeds": n_seeds, **spec}
    if n_runs < MIN_RUNS or pts["gc"].n_unique() < 2 * MIN_SIDE or n_seeds < 2:
        why = f"needs ≥ {MIN_RUNS} completed fig5 runs over ≥ 2 seeds; have {n_runs} runs, {n_seeds} seeds"
        return Analysis("ucurve", empty, claims_frame([insufficient(CLAIM, "fig5", method, why, **kw)]))
    gc, y = pts["gc"].to_numpy(), pts["test_loss"].to_numpy()
    axis = gc_axis(gc)
    x = np.log(gc) if axis == "log" else gc
    to_gc = np.exp if axis == "log" else (lambda v: v)
    method += f"; GC axis: {axis} (GC spans {math.log10(gc.max() / gc.min()):.2g} decades)" if gc.min() > 0 else ""
    tl = two_lines(x, y)
    grid = np.linspace(x.min(), x.max(), 100)
    tables = {**empty, "poly6": poly6(x, y, grid).with_columns(pl.Series("gc", to_gc(grid)))}
    if tl["reason"]:
        return Analysis("ucurve", tables, claims_frame([insufficient(CLAIM, "fig5", method, tl["reason"], **kw)]))
    quad = quadratic_vertex(x, y)
    tables["smooth"] = pl.DataFrame({"gc": gc, "test_loss": tl.pop("smooth"), "se": tl.pop("smooth_se")})
    arms = arm_effects(tl, x)
    weak = arms[0] if tl["p_low"] >= tl["p_high"] else arms[1]
    delta = spec["delta"]
    p_tost = min(1.0, 2 * min(tost_p(a["change"], a["se"], a["df"], delta) for a in arms))  # Bonferroni, 2 arms
    verdict = decide(tl["p_shape"], tl["shape"] == "u")
    if verdict == INCONCLUSIVE and p_tost < ALPHA:
        verdict = ABSENT
    half = stats.t.ppf(1 - ALPHA / 2, weak["df"]) * weak["se"]
    seeds = seeds_for_power(weak["se"], n_seeds, delta)
    tables["fits"] = pl.DataFrame(
        [{"axis": axis, **tl, **quad, "vertex_gc": float(to_gc(quad["vertex"])), "p_tost": p_tost}]
    )
    stat = (
        f"{method}; looked for {'a U' if tl['shape'] == 'u' else 'an inverted U'}; breakpoint GC "
        f"{float(to_gc(tl['breakpoint'])):.3g}; first slope {tl['slope_low']:.3g} (p={tl['p_low']:.3g}), second "
        f"slope {tl['slope_high']:.3g} (p={tl['p_high']:.3g}); TOST of both arms within ±δ p = {p_tost:.3g}; "
        f"quadratic vertex at GC {float(to_gc(quad['vertex'])):.3g}; {describe(verdict, 'two-lines test')}"
    )
    if verdict == INCONCLUSIVE and seeds is not None:
        stat += f"; {seeds} seeds would give 80% power at δ"
    row = claim(
        CLAIM,
        "fig5",
        stat,
        verdict,
        value=weak["change"],
        p_value=tl["p_shape"],
        ci=(weak["change"] - half, weak["change"] + half),
        seeds_needed=seeds,
        **kw,
    )
    return Analysis("ucurve", tables, claims_frame([row]))

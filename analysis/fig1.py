"""Fig. 1: a ReLU net fit to points of y = x² stays near the minimal-GC interpolant, and its GC
grows from ≈0 during training.

- arc length: per fig1 run, the length of the probe curve (t, f(t)) at the last probe step over
  t ∈ [−1, 1], divided by that of the minimal interpolant, the piecewise-linear function through
  the n_train evenly spaced training points (computed exactly in SQL). Mean ratio with a 95%
  t-interval over seeds (scipy); "near" means within `ARC_TOLERANCE` (10%): supported if the CI's
  upper end is ≤ 1.1, contradicted if its lower end is > 1.1, inconclusive if it straddles 1.1.
- GC growth: per run, GC (train split) at the first eval over GC at the last; t-test over seeds
  of log ratio against log `GC_START_MAX` (GC at init below 10% of its final value), two-sided
  p with its sign (`analysis.verdict`): significantly below → supported, significantly above →
  contradicted, otherwise inconclusive.
Fewer than 2 seeds → insufficient data.
"""
from __future__ import annotations

import math

import numpy as np
import polars as pl
from scipy import stats

from analysis.result import (ALPHA, CONTRADICTED, INCONCLUSIVE, SUPPORTED, Analysis, claim, claims_frame,
                             insufficient)
from analysis.verdict import decide
from store.db import query

ARC_CLAIM = "the trained network's curve has arc length near the minimal interpolant's (Fig. 1)"
GC_CLAIM = "GC grows from ≈0 during training (Fig. 1)"
ARC_TOLERANCE, GC_START_MAX = 1.10, 0.10
PAPER = {"kind": "paper", "source": "seed 002 §1–3, Fig. 1"}

_ARC_SQL = """
WITH p AS (
    SELECT pr.run_id, r.seed, coalesce(r.n_train, 10) AS n_train, pr.step, pr.t, pr.output
    FROM probes pr JOIN runs r ON pr.run_id = r.run_id
    WHERE r.status = 'completed' AND r.sweep = 'fig1' AND coalesce(pr.output_index, 0) = 0
      AND pr.t BETWEEN -1 AND 1 AND isfinite(pr.output)
), last AS (SELECT run_id, max(step) AS step FROM p GROUP BY run_id),
seg AS (
    SELECT p.run_id, p.seed, p.n_train, p.step,
           sqrt(pow(p.t - lag(p.t) OVER w, 2) + pow(p.output - lag(p.output) OVER w, 2)) AS len
    FROM p JOIN last ON p.run_id = last.run_id AND p.step = last.step
    WINDOW w AS (PARTITION BY p.run_id ORDER BY p.t)
), knots AS (  -- the minimal interpolant: segments between consecutive training points of y = x²
    SELECT n_train, sum(sqrt(pow(2.0 / (n_train - 1), 2)
                             + pow(pow(-1 + 2.0 * (i + 1) / (n_train - 1), 2)
                                   - pow(-1 + 2.0 * i / (n_train - 1), 2), 2))) AS arc_min
    FROM (SELECT DISTINCT n_train FROM p WHERE n_train >= 2), range(0, 100000) AS g(i)
    WHERE i < n_train - 1 GROUP BY n_train
)
SELECT *, arc_length / arc_min AS ratio FROM (
    SELECT seg.run_id, seg.seed, seg.step, sum(len) AS arc_length, knots.arc_min
    FROM seg JOIN knots ON seg.n_train = knots.n_train GROUP BY ALL
) ORDER BY seed
"""
_GC_SQL = """
WITH e AS (
    SELECT e.run_id, r.seed, e.step, e.gc FROM evals e JOIN runs r ON e.run_id = r.run_id
    WHERE r.status = 'completed' AND r.sweep = 'fig1' AND e.split = 'train' AND isfinite(e.gc)
)
SELECT run_id, seed, arg_min(gc, step) AS gc_first, arg_max(gc, step) AS gc_last, min(step) AS first_step,
       max(step) AS last_step
FROM e GROUP BY run_id, seed HAVING max(step) > min(step) ORDER BY seed
"""
_GC_CURVE_SQL = """
SELECT e.step, count(*) AS n_runs, avg(e.gc) AS gc_mean, min(e.gc) AS gc_min, max(e.gc) AS gc_max
FROM evals e JOIN runs r ON e.run_id = r.run_id
WHERE r.status = 'completed' AND r.sweep = 'fig1' AND e.split = 'train' GROUP BY e.step ORDER BY e.step
"""


def _arc_claim(arc: pl.DataFrame) -> dict:
    method = (f"arc length of f on [−1, 1] at the last probe step / the minimal interpolant's; mean over seeds "
              f"with 95% t-interval; supported if CI ≤ {ARC_TOLERANCE}")
    ratios = arc["ratio"].drop_nulls().to_numpy()
    n, n_seeds = len(ratios), arc["seed"].n_unique()
    if n < 2 or n_seeds < 2:
        return insufficient(ARC_CLAIM, "fig1", method, f"needs ≥ 2 seeds; have {n_seeds}", n_runs=n, n_seeds=n_seeds,
                            **PAPER)
    ci = stats.ttest_1samp(ratios, 1.0).confidence_interval(1 - ALPHA)
    lo, hi = float(ci.low), float(ci.high)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return insufficient(ARC_CLAIM, "fig1", method, "identical ratios across seeds: no CI", n_runs=n,
                            n_seeds=n_seeds, **PAPER)
    verdict = SUPPORTED if hi <= ARC_TOLERANCE else CONTRADICTED if lo > ARC_TOLERANCE else INCONCLUSIVE
    note = "" if verdict != INCONCLUSIVE else " — CI straddles the tolerance; more seeds needed"
    return claim(ARC_CLAIM, "fig1", method + note, verdict, value=float(ratios.mean()), ci=(lo, hi), n_runs=n,
                 n_seeds=n_seeds, **PAPER)


def _gc_claim(gc: pl.DataFrame) -> dict:
    method = (f"GC(first eval) / GC(last eval) per run; two-sided t-test over seeds of log ratio against "
              f"log {GC_START_MAX} (claim: below); value = geometric mean ratio (95% CI)")
    ok = gc.filter((pl.col("gc_first") > 0) & (pl.col("gc_last") > 0))
    n, n_seeds = ok.height, ok["seed"].n_unique()
    if n < 2 or n_seeds < 2:
        return insufficient(GC_CLAIM, "fig1", method, f"needs ≥ 2 seeds with positive GC; have {n_seeds}",
                            n_runs=n, n_seeds=n_seeds, **PAPER)
    log_ratio = (ok["gc_first"] / ok["gc_last"]).log().to_numpy()
    test = stats.ttest_1samp(log_ratio, math.log(GC_START_MAX))
    ci = stats.ttest_1samp(log_ratio, 0.0).confidence_interval(1 - ALPHA)
    p = float(test.pvalue)
    if not math.isfinite(p):
        return insufficient(GC_CLAIM, "fig1", method, "identical ratios across seeds: no variance to test",
                            n_runs=n, n_seeds=n_seeds, **PAPER)
    return claim(GC_CLAIM, "fig1", method, decide(p, float(test.statistic) < 0), **PAPER,
                 value=float(np.exp(log_ratio.mean())), p_value=p, ci=(math.exp(ci.low), math.exp(ci.high)),
                 n_runs=n, n_seeds=n_seeds)


def analyze(con) -> Analysis:
    arc, gc = query(con, _ARC_SQL), query(con, _GC_SQL)
    tables = {"arc": arc, "gc_runs": gc, "gc_over_training": query(con, _GC_CURVE_SQL)}
    return Analysis("fig1", tables, claims_frame([_arc_claim(arc), _gc_claim(gc)]))

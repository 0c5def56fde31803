"""Fig. 1: a ReLU net fit to points of y = x² has, at zero training error, an arc length
equivalent to the minimal interpolant's, and its GC grows from ≈0 during training.

The fit step of a run (`_FIT_SQL`): its first eval whose train MSE (the 10 points) is ≤ `FIT_MSE`
("zero training error" for a regression, docs/EXPERIMENTS.md fig1); a run that never gets there
is read at its eval of lowest train MSE (its closest approach), and the rows count such runs.

- arc length: per run, the length of the probe curve (t, f(t)) over t ∈ [−1, 1] at the fit
  step, divided by that of the minimal interpolant (the piecewise-linear function through the
  n_train evenly spaced training points, `minimal_arc`). Equivalence test (TOST, statsmodels
  `ttost_mean`) of the mean ratio over seeds against [1 − `ARC_MARGIN`, 1 + `ARC_MARGIN`]:
  TOST p < α → supported; the mean significantly outside the margin (one-sided t-test beyond
  the nearer bound, p < α) → contradicted; otherwise inconclusive. Value = mean ratio with its
  90% (1 − 2α) t-interval, the interval TOST checks. The zero function and any straight line
  (ratio ≈ 0.68) fail it.
- GC growth, at matched training error: per run, GC (train split) at the first eval over GC at
  the fit step, so every run is compared at the same training error; runs that never reach
  `FIT_MSE` are left out and counted. Two-sided t-test over seeds of the log ratio against log
  `GC_START_MAX` (GC at init below 10% of its value at the fit): significantly below →
  supported, above → contradicted, otherwise inconclusive.
- arc length against the network's OWN values, at every eval ("throughout training"): per run and
  probe step, the curve's arc length over the polyline through its own values at the training
  inputs (≥ 1 by construction, so the test is not passed by a curve that merely misses the points);
  per run the largest ratio over its evals; two-sided t-test over seeds of the mean against
  1 + `ARC_MARGIN`: significantly below → supported, above → contradicted.
Fewer than 2 seeds → insufficient data.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
from scipy import stats
from statsmodels.stats.weightstats import DescrStatsW

from gclab.analysis.deltas import declared
from gclab.analysis.result import (
    ALPHA,
    CONTRADICTED,
    INCONCLUSIVE,
    SUPPORTED,
    Analysis,
    claim,
    claims_frame,
    defer,
    insufficient,
)
from gclab.analysis.verdict import decide, describe
from gclab.store.db import query

ARC_CLAIM = "at zero training error the network's arc length is equivalent to the minimal interpolant's (Fig. 1)"
GC_CLAIM = "GC grows from ≈0 during training, compared at matched (zero) training error (Fig. 1)"
OWN_CLAIM = (
    "throughout training the network's arc length stays within 10% of the shortest curve through its own "
    "values at the training inputs (Fig. 1: minimal arc length for the training error it has)"
)
ARC_MARGIN, GC_START_MAX = 0.10, 0.10
FIT_MSE = 0.005  # train MSE on targets in [0, 1] read as "zero training error" (docs/EXPERIMENTS.md fig1)
PAPER = {"kind": "paper", "source": "GC paper §2, Fig. 1 (minimal arc length for a given training error)"}
ARC_SPEC, GROWTH_SPEC = declared("fig1:arc"), declared("fig1:gc_growth")  # family, δ (docs/EXPERIMENTS.md)

_RUNS = "r.status = 'completed' AND r.sweep = 'fig1'"
_FIT_SQL = f"""
WITH e AS (
    SELECT e.run_id, r.seed, e.step, e.loss, e.gc FROM evals e JOIN runs r ON e.run_id = r.run_id
    WHERE {_RUNS} AND e.split = 'train' AND isfinite(e.loss)
)
SELECT run_id, any_value(seed) AS seed, min(step) AS first_step, arg_min(gc, step) AS gc_first,
       coalesce(min(step) FILTER (WHERE loss <= {FIT_MSE}), arg_min(step, loss)) AS fit_step,
       count(*) FILTER (WHERE loss <= {FIT_MSE}) > 0 AS reached_fit
FROM e GROUP BY run_id
"""
# Length of each segment of the probe curve (t, f(t)) over t ∈ [−1, 1], per run and probe step;
# `{steps}` restricts the (run, step) pairs.
_SEGMENTS = f"""
p AS (
    SELECT pr.run_id, r.seed, coalesce(r.n_train, 10) AS n_train, pr.step, pr.t, pr.output
    FROM probes pr JOIN runs r ON pr.run_id = r.run_id
    WHERE {_RUNS} AND coalesce(pr.output_index, 0) = 0 AND pr.t BETWEEN -1 AND 1 AND isfinite(pr.output)
      AND {{steps}}
),
seg AS (
    SELECT run_id, seed, n_train, step,
           sqrt(pow(t - lag(t) OVER w, 2) + pow(output - lag(output) OVER w, 2)) AS len
    FROM p WINDOW w AS (PARTITION BY run_id, step ORDER BY t)
)"""
_ARC_SQL = f"""
WITH fit AS ({_FIT_SQL}),
{_SEGMENTS.format(steps="(pr.run_id, pr.step) IN (SELECT (run_id, fit_step) FROM fit)")}
SELECT a.*, fit.reached_fit, ev.loss AS train_mse FROM (
    SELECT run_id, seed, n_train, step, sum(len) AS arc_length FROM seg GROUP BY ALL
) a JOIN fit ON fit.run_id = a.run_id
JOIN evals ev ON ev.run_id = a.run_id AND ev.step = a.step AND ev.split = 'train'
ORDER BY a.seed, a.run_id
"""
# Every probe curve of every run (all evals: "throughout training"), for the own-polyline ratio.
_PROBES_SQL = f"""
SELECT pr.run_id, r.seed, coalesce(r.n_train, 10) AS n_train, pr.step, pr.t, pr.output
FROM probes pr JOIN runs r ON pr.run_id = r.run_id
WHERE {_RUNS} AND coalesce(pr.output_index, 0) = 0 AND pr.t BETWEEN -1 AND 1 AND isfinite(pr.output)
ORDER BY pr.run_id, pr.step, pr.t
"""
_GC_SQL = f"""
WITH fit AS ({_FIT_SQL})
SELECT fit.run_id, fit.seed, fit.gc_first, e.gc AS gc_fit, fit.first_step, fit.fit_step, fit.reached_fit
FROM fit JOIN evals e ON e.run_id = fit.run_id AND e.step = fit.fit_step AND e.split = 'train'
WHERE fit.fit_step > fit.first_step AND isfinite(e.gc) ORDER BY fit.seed, fit.run_id
"""
# Per run and eval: arc length of the probe curve and train GC (Fig. 1 right).
_OVER_TRAINING_SQL = f"""
WITH {_SEGMENTS.format(steps="TRUE")},
arc AS (SELECT run_id, step, sum(len) AS arc_length FROM seg GROUP BY run_id, step),
gc AS (SELECT e.run_id, e.step, e.gc FROM evals e JOIN runs r ON r.run_id = e.run_id
       WHERE {_RUNS} AND e.split = 'train')
SELECT r.run_id, r.seed, coalesce(arc.step, gc.step) AS step, arc.arc_length, gc.gc
FROM arc FULL JOIN gc ON arc.run_id = gc.run_id AND arc.step = gc.step
JOIN runs r ON r.run_id = coalesce(arc.run_id, gc.run_id)
ORDER BY r.seed, step
"""
MAX_SEEDS, N_STEPS_SHOWN, MAX_T = 5, 6, 101  # the function chart: seeds, probe steps, points along t
_FUNCTION_SQL = f"""
WITH seeds AS (SELECT DISTINCT r.seed FROM runs r SEMI JOIN probes p ON p.run_id = r.run_id WHERE {_RUNS}
               ORDER BY r.seed LIMIT {MAX_SEEDS}),
c AS (
    SELECT r.seed, p.step, p.t, avg(p.output) AS output
    FROM probes p JOIN runs r ON r.run_id = p.run_id
    WHERE {_RUNS} AND p.output_index = 0 AND r.seed IN (FROM seeds) AND p.step IN ({{steps}})
    GROUP BY ALL),
n AS (SELECT *, row_number() OVER w - 1 AS i, count(*) OVER (PARTITION BY seed, step) AS m
      FROM c WINDOW w AS (PARTITION BY seed, step ORDER BY t))
SELECT seed, step, t, output FROM n
WHERE i % greatest(1, ceil(m / {MAX_T})::BIGINT) = 0 OR i = m - 1
ORDER BY seed, step, t
"""
_PROBE_STEPS_SQL = f"SELECT DISTINCT p.step FROM probes p JOIN runs r ON r.run_id = p.run_id WHERE {_RUNS} ORDER BY 1"
_DATASET_SQL = f"SELECT DISTINCT r.dataset, r.n_train FROM runs r WHERE {_RUNS}"
ZERO_ARC = 2.0  # arc length of the zero function on [−1, 1], where the network starts
_GC_CURVE_SQL = """
SELECT e.step, count(*) AS n_runs, avg(e.gc) AS gc_mean, min(e.gc) AS gc_min, max(e.gc) AS gc_max
FROM evals e JOIN runs r ON e.run_id = r.run_id
WHERE r.status = 'completed' AND r.sweep = 'fig1' AND e.split = 'train' GROUP BY e.step ORDER BY e.step
"""


def _not_fitted(df: pl.DataFrame) -> str:
    n = int((~df["reached_fit"]).sum()) if df.height else 0
    return f"{n} of {df.height} runs never reached train MSE ≤ {FIT_MSE:g} (read at their lowest MSE)"


def _arc_claim(arc: pl.DataFrame) -> dict:
    lo_m, hi_m = 1 - ARC_MARGIN, 1 + ARC_MARGIN
    method = (
        f"arc length of f on [−1, 1] at the fit step / the minimal interpolant's; TOST (statsmodels ttost_mean) "
        f"of the mean ratio over seeds within [{lo_m:g}, {hi_m:g}]; contradicted if significantly outside; "
        f"value = mean ratio (90% CI); {_not_fitted(arc)}"
    )
    ratios = arc["ratio"].drop_nulls().to_numpy()
    n, n_seeds = len(ratios), arc["seed"].n_unique()
    if n < 2 or n_seeds < 2:
        return insufficient(
            ARC_CLAIM,
            "fig1",
            method,
            f"needs ≥ 2 seeds; have {n_seeds}",
            n_runs=n,
            n_seeds=n_seeds,
            **PAPER,
            **ARC_SPEC,
        )
    if np.ptp(ratios) == 0:
        return insufficient(
            ARC_CLAIM,
            "fig1",
            method,
            "identical ratios across seeds: no variance to test",
            n_runs=n,
            n_seeds=n_seeds,
            **PAPER,
            **ARC_SPEC,
        )
    d = DescrStatsW(ratios)
    p_tost = float(d.ttost_mean(lo_m, hi_m)[0])
    outside = [
        stats.ttest_1samp(ratios, lo_m, alternative="less").pvalue,
        stats.ttest_1samp(ratios, hi_m, alternative="greater").pvalue,
    ]
    p_out = float(min(outside))
    verdict = SUPPORTED if p_tost < ALPHA else CONTRADICTED if p_out < ALPHA else INCONCLUSIVE
    lo, hi = d.tconfint_mean(alpha=2 * ALPHA)
    note = {
        SUPPORTED: "equivalent within the margin",
        CONTRADICTED: "significantly outside the margin",
        INCONCLUSIVE: "neither equivalence nor a difference shown; more seeds needed",
    }[verdict]
    return claim(
        ARC_CLAIM,
        "fig1",
        f"{method}; TOST p = {p_tost:.3g}, outside p = {p_out:.3g}; {note}",
        verdict,
        value=float(ratios.mean()),
        p_value=p_out if verdict == CONTRADICTED else p_tost,
        ci=(lo, hi),
        n_runs=n,
        n_seeds=n_seeds,
        **PAPER,
        **ARC_SPEC,
    )


def own_ratios(probes: pl.DataFrame) -> pl.DataFrame:
    """Per run and probe step: the curve's arc length over the polyline through the curve's own values at
    the n_train training inputs (read off the probe polyline by linear interpolation, so the ratio is
    ≥ 1 by construction: a curve through points is never shorter than the polyline through them)."""
    rows = []
    for (run_id, seed, n_train, step), g in probes.group_by("run_id", "seed", "n_train", "step", maintain_order=True):
        t, f = g["t"].to_numpy(), g["output"].to_numpy()
        if len(t) < 2 or n_train < 2:
            continue
        x = np.linspace(-1.0, 1.0, int(n_train))
        fx = np.interp(x, t, f)
        own = float(np.hypot(np.diff(x), np.diff(fx)).sum())
        arc = float(np.hypot(np.diff(t), np.diff(f)).sum())
        rows.append({"run_id": run_id, "seed": seed, "step": step, "arc_length": arc, "own_arc": own})
    schema = {"run_id": pl.String, "seed": pl.Int64, "step": pl.Int64, "arc_length": pl.Float64, "own_arc": pl.Float64}
    return pl.DataFrame(rows, schema=schema).with_columns((pl.col("arc_length") / pl.col("own_arc")).alias("ratio"))


def _own_claim(own: pl.DataFrame) -> dict:
    """Per run, the largest ratio over its evals; two-sided t-test over seeds of the mean against
    1 + ARC_MARGIN (below supports, above contradicts)."""
    bound = 1 + ARC_MARGIN
    method = (
        "per run, the largest over its evals of arc length / the polyline through its own values at the "
        f"training inputs (≥ 1 by construction); two-sided t-test over seeds of the mean against {bound:g} "
        "(claim: below); value = mean (95% CI)"
    )
    per_run = (
        own.group_by("run_id").agg(pl.col("seed").first(), pl.col("ratio").max(), pl.len().alias("n")).sort("run_id")
    )
    r, n_seeds = per_run["ratio"].to_numpy(), per_run["seed"].n_unique()
    kw = {**PAPER, **declared("fig1:own_arc")}
    if len(r) < 2 or n_seeds < 2 or np.ptp(r) == 0:
        why = f"needs ≥ 2 seeds with probe curves and some spread; have {n_seeds}"
        return insufficient(OWN_CLAIM, "fig1", method, why, n_runs=len(r), n_seeds=n_seeds, **kw)
    res = stats.ttest_1samp(r, bound)
    ci = res.confidence_interval(1 - ALPHA)
    verdict = decide(float(res.pvalue), r.mean() < bound)
    evals = int(per_run["n"].min())
    return claim(
        OWN_CLAIM,
        "fig1",
        f"{method}; ≥ {evals} evals per run; {describe(verdict, 'mean largest ratio − ' + format(bound, 'g'))}",
        verdict,
        value=float(r.mean()),
        p_value=float(res.pvalue),
        ci=(ci.low, ci.high),
        n_runs=len(r),
        n_seeds=n_seeds,
        **kw,
    )


def _gc_claim(gc: pl.DataFrame) -> dict:
    method = (
        f"GC(first eval) / GC(first eval at train MSE ≤ {FIT_MSE:g}) per run; two-sided t-test over seeds of "
        f"log ratio against log {GC_START_MAX} (claim: below); value = geometric mean ratio (95% CI)"
    )
    left_out = int((~gc["reached_fit"]).sum()) if gc.height else 0
    method += f"; {left_out} runs never reached that training error (left out)"
    ok = gc.filter(pl.col("reached_fit") & (pl.col("gc_first") > 0) & (pl.col("gc_fit") > 0))
    n, n_seeds = ok.height, ok["seed"].n_unique()
    if n < 2 or n_seeds < 2:
        return insufficient(
            GC_CLAIM,
            "fig1",
            method,
            f"needs ≥ 2 seeds with positive GC at the fit; have {n_seeds}",
            n_runs=n,
            n_seeds=n_seeds,
            **PAPER,
            **GROWTH_SPEC,
        )
    log_ratio = (ok["gc_first"] / ok["gc_fit"]).log().to_numpy()
    test = stats.ttest_1samp(log_ratio, math.log(GC_START_MAX))
    ci = stats.ttest_1samp(log_ratio, 0.0).confidence_interval(1 - ALPHA)
    p = float(test.pvalue)
    if not math.isfinite(p):
        return insufficient(
            GC_CLAIM,
            "fig1",
            method,
            "identical ratios across seeds: no variance to test",
            n_runs=n,
            n_seeds=n_seeds,
            **PAPER,
            **GROWTH_SPEC,
        )
    return claim(
        GC_CLAIM,
        "fig1",
        method,
        decide(p, float(test.statistic) < 0),
        **PAPER,
        **GROWTH_SPEC,
        value=float(np.exp(log_ratio.mean())),
        p_value=p,
        ci=(math.exp(ci.low), math.exp(ci.high)),
        n_runs=n,
        n_seeds=n_seeds,
    )


def spread(values: list, k: int) -> list:
    """k values spread evenly over `values`, first and last included."""
    if len(values) <= k:
        return values
    idx = sorted({round(i * (len(values) - 1) / (k - 1)) for i in range(k)})
    return [values[i] for i in idx]


def parabola_points(n_train: int) -> pl.DataFrame:
    """The parabola's training points: n_train evenly spaced x on [−1, 1], y = x² (as gclab/collect/datasets.py)."""
    x = np.linspace(-1.0, 1.0, n_train)
    return pl.DataFrame({"x": x, "y": x**2})


def minimal_arc(n_train: int) -> float:
    """Arc length of the minimal interpolant: the piecewise-linear curve through the training points."""
    pts = parabola_points(n_train)
    return float(np.hypot(np.diff(pts["x"].to_numpy()), np.diff(pts["y"].to_numpy())).sum())


def training_points(con) -> pl.DataFrame:
    """The fig1 runs' training points; empty for another dataset or mixed sizes."""
    df = query(con, _DATASET_SQL)
    if df.height != 1 or df["dataset"][0] != "parabola" or not (df["n_train"][0] or 0) >= 2:
        return pl.DataFrame(schema={"x": pl.Float64, "y": pl.Float64})
    return parabola_points(int(df["n_train"][0]))


def reference_arcs(points: pl.DataFrame) -> pl.DataFrame:
    """Arc lengths to compare with: the zero function's and the minimal interpolant's."""
    rows = [{"label": "zero function", "arc_length": ZERO_ARC}]
    if points.height:
        rows.append({"label": "minimal interpolant", "arc_length": minimal_arc(points.height)})
    return pl.DataFrame(rows)


def arc_ratios(arc: pl.DataFrame) -> pl.DataFrame:
    """Per run, the arc length over the minimal interpolant's for its n_train (≥ 2 training points)."""
    arc = arc.filter(pl.col("n_train") >= 2)
    mins = {n: minimal_arc(n) for n in arc["n_train"].unique().to_list()}
    arc_min = pl.col("n_train").replace_strict(mins, return_dtype=pl.Float64)
    return arc.with_columns(arc_min.alias("arc_min")).with_columns(
        (pl.col("arc_length") / pl.col("arc_min")).alias("ratio")
    )


def figure_tables(con) -> dict[str, pl.DataFrame]:
    """What the report draws: the function at a few steps, arc length and GC over training, references."""
    steps = spread(query(con, _PROBE_STEPS_SQL)["step"].to_list(), N_STEPS_SHOWN)
    points = training_points(con)
    return {
        "over_training": query(con, _OVER_TRAINING_SQL),
        "function": query(con, _FUNCTION_SQL.format(steps=", ".join(map(str, steps)) or "NULL")),
        "training_points": points,
        "reference_arcs": reference_arcs(points),
    }


def analyze(con) -> Analysis:
    arc, gc = arc_ratios(query(con, _ARC_SQL)), query(con, _GC_SQL)
    own = own_ratios(query(con, _PROBES_SQL))
    tables = {"arc": arc, "gc_runs": gc, "gc_over_training": query(con, _GC_CURVE_SQL), "own_arc": own}
    deferred = defer(con, {("over_training", "function", "training_points", "reference_arcs"): figure_tables})
    return Analysis("fig1", tables, claims_frame([_arc_claim(arc), _gc_claim(gc), _own_claim(own)]), deferred)

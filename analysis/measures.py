"""Complexity measures ranked against the generalization gap (Jiang et al. 2020, "Fantastic
generalization measures"), over every completed, trained run of every sweep.

Measures (train split, last eval): gc, param_norm_sq, spectral_product, dist_from_init,
sharpness, bfd. Gap = test loss − train loss at the last eval.
- Kendall τ: scipy.stats.kendalltau (τ-b) of measure vs gap over all runs.
- granulated Kendall coefficient Ψ: for each hyperparameter axis i (a runs column that varies
  within some sweep), group the runs that share sweep, seed and every other hyperparameter, so
  only axis i varies inside a group; ψ_i = mean over groups of the within-group τ; Ψ = mean of
  ψ_i over the axes that have at least one such group. Groups where τ is undefined (a constant
  measure or gap) are left out of the mean.

The claim row is a `toolkit` question (gclab's, not the paper's). Verdict (`analysis.verdict`):
two-sided Kendall τ test over runs; significantly positive → supported, negative →
contradicted, otherwise inconclusive; fewer than `MIN_RUNS` runs → insufficient data.
"""
from __future__ import annotations

import warnings

import numpy as np
import polars as pl
from scipy import stats

from analysis.result import Analysis, claim, claims_frame, insufficient
from analysis.run_summary import HYPER_COLUMNS, with_runs
from analysis.verdict import decide
from store.db import query

MEASURES = ["gc", "param_norm_sq", "spectral_product", "dist_from_init", "sharpness", "bfd"]
CLAIM = "GC is positively rank-correlated with the generalization gap across runs"
MIN_RUNS = 6
TOOLKIT = {"kind": "toolkit", "source": "gclab question, method of Jiang et al. 2020"}

_SQL = with_runs(f"""
SELECT run_id, sweep, seed, {", ".join(HYPER_COLUMNS)}, gen_gap,
       gc_last AS gc, param_norm_sq, spectral_product, dist_from_init, sharpness, bfd
FROM rs WHERE last_step > 0 AND isfinite(gen_gap)
""")


def _tau(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2:
        return float("nan"), float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input → NaN, by design
        res = stats.kendalltau(x[ok], y[ok])
    return float(res.statistic), float(res.pvalue)


def varying_axes(runs: pl.DataFrame, axes: list[str]) -> list[str]:
    """Columns of `axes` that take ≥ 2 values within at least one sweep."""
    if not runs.height:
        return []
    counts = runs.group_by("sweep").agg(pl.col(a).n_unique() for a in axes)
    return [a for a in axes if counts[a].max() > 1]


def granulated(runs: pl.DataFrame, measures: list[str], axes: list[str], target: str = "gen_gap",
               group_cols: tuple[str, ...] = ("sweep", "seed")) -> pl.DataFrame:
    """Long table (measure, axis, psi, n_groups): ψ_i per measure and axis (see module docstring)."""
    rows = []
    for axis in axes:
        others = [*group_cols, *[a for a in axes if a != axis]]
        key = pl.concat_str([pl.col(c).cast(pl.String).fill_null("∅") for c in others], separator="|")
        groups = (runs.with_columns(key.alias("_key"))
                  .filter(pl.col(axis).n_unique().over("_key") >= 2)
                  .partition_by("_key"))
        for m in measures:
            taus = np.array([_tau(g[m].cast(pl.Float64).to_numpy(), g[target].to_numpy())[0] for g in groups])
            taus = taus[np.isfinite(taus)]
            rows.append({"measure": m, "axis": axis, "psi": float(taus.mean()) if taus.size else None,
                         "n_groups": int(taus.size)})
    return pl.DataFrame(rows, schema={"measure": pl.String, "axis": pl.String, "psi": pl.Float64,
                                      "n_groups": pl.Int64})


def ranking(runs: pl.DataFrame, measures: list[str], axes: list[str],
            target: str = "gen_gap") -> tuple[pl.DataFrame, pl.DataFrame]:
    """(ranking, per_axis): Kendall τ over all runs and granulated Ψ per measure."""
    per_axis = granulated(runs, measures, axes, target)
    psi = per_axis.group_by("measure").agg(pl.col("psi").drop_nulls().mean().alias("granulated_tau"),
                                           pl.col("psi").drop_nulls().len().cast(pl.Int64).alias("n_axes"))
    y = runs[target].to_numpy() if runs.height else np.array([])
    rows = []
    for m in measures:
        x = runs[m].cast(pl.Float64).to_numpy() if runs.height else np.array([])
        tau, p = _tau(x, y)
        n = int((np.isfinite(x) & np.isfinite(y)).sum())
        rows.append({"measure": m, "kendall_tau": tau, "p_value": p, "n_runs": n})
    table = (pl.DataFrame(rows, schema={"measure": pl.String, "kendall_tau": pl.Float64, "p_value": pl.Float64,
                                        "n_runs": pl.Int64}).fill_nan(None)
             .join(psi, on="measure", how="left")
             .select("measure", "kendall_tau", "p_value", "granulated_tau", "n_runs", "n_axes")
             .sort("granulated_tau", descending=True, nulls_last=True))
    return table, per_axis


def analyze(con) -> Analysis:
    runs = query(con, _SQL)
    axes = varying_axes(runs, HYPER_COLUMNS)
    table, per_axis = ranking(runs, MEASURES, axes)
    ok = runs.filter(pl.col("gc").is_not_null() & pl.col("gc").is_finite())
    n_runs, n_seeds = ok.height, ok["seed"].n_unique()
    method = "Kendall τ-b of GC (train, last eval) vs test − train loss over runs; two-sided p (claim: τ > 0); value = τ"
    if n_runs < MIN_RUNS:
        row = insufficient(CLAIM, "measures", method, f"needs ≥ {MIN_RUNS} trained runs; have {n_runs}",
                           n_runs=n_runs, n_seeds=n_seeds, **TOOLKIT)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = stats.kendalltau(ok["gc"].to_numpy(), ok["gen_gap"].to_numpy())
        gc_row = table.filter(pl.col("measure") == "gc").row(0, named=True)
        rank = table["measure"].to_list().index("gc") + 1
        psi = gc_row["granulated_tau"] if gc_row["granulated_tau"] is not None else float("nan")
        stat = (f"{method}; granulated Ψ = {psi:.3f} "
                f"over {gc_row['n_axes']} axes, rank {rank} of {len(MEASURES)} measures by Ψ")
        tau, p = float(res.statistic), float(res.pvalue)
        if not np.isfinite(tau):
            row = insufficient(CLAIM, "measures", method, "τ undefined (constant GC or gap)", n_runs=n_runs,
                               n_seeds=n_seeds, **TOOLKIT)
        else:
            row = claim(CLAIM, "measures", stat, decide(p, tau > 0), **TOOLKIT, value=tau, p_value=p,
                        n_runs=n_runs, n_seeds=n_seeds)
    return Analysis("measures", {"ranking": table, "per_axis": per_axis}, claims_frame([row]))

"""Complexity measures ranked against the generalization gap (Jiang et al. 2020, "Fantastic
generalization measures"), over every completed, trained run of every sweep (runs of sweeps
trained to zero training error only if they reached it, `analysis.run_summary.FITTED`).

Measures (train split): gc = GC at best test accuracy ("GC of a run", as every other row);
param_norm_sq, spectral_product, dist_from_init, sharpness, bfd at the last eval. Gap = test
loss − train loss at the last eval.
- Kendall τ: scipy.stats.kendalltau (τ-b) of measure vs gap over all runs.
- granulated Kendall coefficient Ψ: for each hyperparameter axis i (a runs column that varies
  within some sweep), group the runs that share sweep, seed and every other hyperparameter, so
  only axis i varies inside a group; ψ_i = mean over groups of the within-group τ; Ψ = mean of
  ψ_i over the axes that have at least one such group. Groups where τ is undefined (a constant
  measure or gap) are left out of the mean.

The claim row is a `toolkit` question (gclab's, not the paper's), decided by GC's Ψ: a
stratified permutation test — the gap is permuted within every group of every axis (independent
draws per axis; a group of one axis and one of another share at most one run), `N_PERMUTATIONS`
seeded resamples, two-sided p = (1 + #{|Ψ*| ≥ |Ψ|}) / (1 + resamples). Significantly positive →
supported, negative → contradicted, otherwise inconclusive; fewer than `MIN_RUNS` runs or no
axis with a group → insufficient data. The pooled τ over runs is shown beside Ψ (statistic and
table), never decides: runs of different sweeps and training stages are not exchangeable.
"""

from __future__ import annotations

import warnings
from functools import cache

import numpy as np
import polars as pl
from scipy import stats

from gclab.analysis.group_kendall import group_tau_b
from gclab.analysis.result import Analysis, claim, claims_frame, insufficient
from gclab.analysis.run_summary import EXCLUDED_SQL, FITTED, HYPER_COLUMNS, with_runs
from gclab.analysis.verdict import decide, describe
from gclab.store.db import query

MEASURES = ["gc", "param_norm_sq", "spectral_product", "dist_from_init", "sharpness", "bfd"]
CLAIM = "GC is positively rank-correlated with the generalization gap (granulated Kendall Ψ)"
MIN_RUNS = 6
N_PERMUTATIONS = 999
TOOLKIT = {"kind": "toolkit", "source": "gclab question, method of Jiang et al. 2020"}

_SQL = with_runs(f"""
SELECT run_id, sweep, seed, {", ".join(HYPER_COLUMNS)}, gen_gap,
       gc, param_norm_sq, spectral_product, dist_from_init, sharpness, bfd
FROM rs WHERE last_step > 0 AND isfinite(gen_gap) AND {FITTED}
ORDER BY run_id
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


def _keyed(runs: pl.DataFrame, axis: str, axes: list[str], group_cols: tuple[str, ...]) -> pl.DataFrame:
    """`runs` with `_key` (group_cols and every axis but `axis`), only the groups in which `axis` varies."""
    others = [*group_cols, *[a for a in axes if a != axis]]
    key = pl.concat_str([pl.col(c).cast(pl.String).fill_null("∅") for c in others], separator="|")
    return runs.with_columns(key.alias("_key")).filter(pl.col(axis).n_unique().over("_key") >= 2)


def axis_groups(
    runs: pl.DataFrame, axis: str, axes: list[str], group_cols: tuple[str, ...] = ("sweep", "seed")
) -> list[pl.DataFrame]:
    """The groups of runs that share `group_cols` and every axis but `axis`, in which `axis` varies."""
    return _keyed(runs, axis, axes, group_cols).partition_by("_key", maintain_order=True)


def granulated(
    runs: pl.DataFrame,
    measures: list[str],
    axes: list[str],
    target: str = "gen_gap",
    group_cols: tuple[str, ...] = ("sweep", "seed"),
) -> pl.DataFrame:
    """Long table (measure, axis, psi, n_groups): ψ_i per measure and axis (see module docstring).

    The within-group τ of every group at once (`analysis.group_kendall`), averaged in the groups'
    order of first appearance, as the per-group loop of `axis_groups` would."""
    rows = []
    for axis in axes:
        keyed = _keyed(runs, axis, axes, group_cols).with_row_index("_row")
        long = keyed.select(
            pl.col("_row").min().over("_key").alias("_group"),
            pl.col(target).cast(pl.Float64).alias("_y"),
            *[pl.col(m).cast(pl.Float64) for m in measures],
        ).unpivot(index=["_group", "_y"], on=measures, variable_name="_measure", value_name="_x")
        taus = group_tau_b(long, by=["_measure", "_group"], x="_x", y="_y")
        for m in measures:
            t = taus.filter(pl.col("_measure") == m)["tau"].to_numpy()
            t = t[np.isfinite(t)]
            rows.append(
                {"measure": m, "axis": axis, "psi": float(t.mean()) if t.size else None, "n_groups": int(t.size)}
            )
    return pl.DataFrame(rows, schema={"measure": pl.String, "axis": pl.String, "psi": pl.Float64, "n_groups": pl.Int64})


def ranking(
    runs: pl.DataFrame, measures: list[str], axes: list[str], target: str = "gen_gap"
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(ranking, per_axis): Kendall τ over all runs and granulated Ψ per measure."""
    per_axis = granulated(runs, measures, axes, target)
    psi = per_axis.group_by("measure").agg(
        pl.col("psi").drop_nulls().mean().alias("granulated_tau"),
        pl.col("psi").drop_nulls().len().cast(pl.Int64).alias("n_axes"),
    )
    y = runs[target].to_numpy() if runs.height else np.array([])
    rows = []
    for m in measures:
        x = runs[m].cast(pl.Float64).to_numpy() if runs.height else np.array([])
        tau, p = _tau(x, y)
        n = int((np.isfinite(x) & np.isfinite(y)).sum())
        rows.append({"measure": m, "kendall_tau": tau, "p_value": p, "n_runs": n})
    table = (
        pl.DataFrame(
            rows, schema={"measure": pl.String, "kendall_tau": pl.Float64, "p_value": pl.Float64, "n_runs": pl.Int64}
        )
        .fill_nan(None)
        .join(psi, on="measure", how="left")
        .select("measure", "kendall_tau", "p_value", "granulated_tau", "n_runs", "n_axes")
        .sort("granulated_tau", descending=True, nulls_last=True)
    )
    return table, per_axis


@cache
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices i < j of the pairs of n rows, cached: the groups repeat a few sizes thousands of times."""
    i, j = np.triu_indices(n, 1)
    i.flags.writeable = j.flags.writeable = False
    return i, j


def _perm_taus(x: np.ndarray, y: np.ndarray, perms: np.ndarray) -> np.ndarray | None:
    """τ-b of x against y[perm] for every row of `perms` (None when τ is undefined: a constant x or y).
    Vectorized over permutations: (C − D) = Σ_pairs sign(Δx) sign(Δy); ties are permutation-invariant."""
    i, j = _pairs(len(x))
    sx = np.sign(x[i] - x[j])
    yp = y[perms]
    sy = np.sign(yp[:, i] - yp[:, j])
    denom = np.sqrt(np.count_nonzero(sx) * np.count_nonzero(sy[0]))
    return sy @ sx / denom if denom else None


def psi_test(
    runs: pl.DataFrame,
    measure: str,
    axes: list[str],
    target: str = "gen_gap",
    n_resamples: int = N_PERMUTATIONS,
    seed: int = 0,
) -> dict:
    """Ψ of `measure` with its stratified permutation p (module docstring): psi, p_value, n_axes, n_groups."""
    rng = np.random.default_rng(seed)
    per_axis = []  # (R + 1,) ψ_i: observed first, then the resamples
    n_groups = 0
    for axis in axes:
        taus = []
        for g in axis_groups(runs, axis, axes):
            x, y = g[measure].cast(pl.Float64).to_numpy(), g[target].cast(pl.Float64).to_numpy()
            # null → NaN; in numpy: a Polars filter per group cost ~15 s at 100k runs
            keep = np.isfinite(x) & np.isfinite(y)
            if keep.sum() < 2:
                continue
            x, y = x[keep], y[keep]
            perms = np.vstack([np.arange(len(y)), rng.permuted(np.tile(np.arange(len(y)), (n_resamples, 1)), axis=1)])
            t = _perm_taus(x, y, perms)
            if t is not None:
                taus.append(t)
        if taus:
            per_axis.append(np.mean(taus, axis=0))
            n_groups += len(taus)
    if not per_axis:
        return {"psi": None, "p_value": None, "n_axes": 0, "n_groups": 0}
    psi = np.mean(per_axis, axis=0)
    p = (1 + np.count_nonzero(np.abs(psi[1:]) >= abs(psi[0]) - 1e-12)) / (1 + n_resamples)
    return {"psi": float(psi[0]), "p_value": float(p), "n_axes": len(per_axis), "n_groups": n_groups}


def analyze(con) -> Analysis:
    runs = query(con, _SQL)
    axes = varying_axes(runs, HYPER_COLUMNS)
    table, per_axis = ranking(runs, MEASURES, axes)
    ok = runs.filter(pl.col("gc").is_not_null() & pl.col("gc").is_finite())
    n_runs, n_seeds = ok.height, ok["seed"].n_unique()
    method = (
        f"granulated Kendall Ψ (Jiang et al. 2020) of GC (train, at best test accuracy) vs test − train loss: "
        f"mean over hyper-parameter axes of the mean within-group τ-b, other axes fixed; two-sided stratified "
        f"permutation test ({N_PERMUTATIONS} resamples, claim: Ψ > 0); value = Ψ"
    )
    n_out = int(query(con, EXCLUDED_SQL)["n_excluded"].sum())
    method += f"; {n_out} completed runs of sweeps trained to zero training error left out (did not reach it)"
    res = psi_test(ok, "gc", axes) if n_runs >= MIN_RUNS else {"psi": None}
    if n_runs < MIN_RUNS or res["psi"] is None:
        why = (
            f"needs ≥ {MIN_RUNS} trained runs; have {n_runs}"
            if n_runs < MIN_RUNS
            else "no hyper-parameter axis varies within a group of runs"
        )
        row = insufficient(CLAIM, "measures", method, why, n_runs=n_runs, n_seeds=n_seeds, **TOOLKIT)
    else:
        gc_row = table.filter(pl.col("measure") == "gc").row(0, named=True)
        rank = table["measure"].to_list().index("gc") + 1
        verdict = decide(res["p_value"], res["psi"] > 0)
        tau = gc_row["kendall_tau"] if gc_row["kendall_tau"] is not None else float("nan")
        stat = (
            f"{method}; {res['n_axes']} axes, {res['n_groups']} groups; pooled τ over all runs = {tau:.3f} "
            f"(p = {gc_row['p_value'] if gc_row['p_value'] is not None else float('nan'):.3g}, shown only); "
            f"rank {rank} of {len(MEASURES)} measures by Ψ; {describe(verdict, 'Ψ')}"
        )
        row = claim(
            CLAIM,
            "measures",
            stat,
            verdict,
            **TOOLKIT,
            value=res["psi"],
            p_value=res["p_value"],
            n_runs=n_runs,
            n_seeds=n_seeds,
        )
    return Analysis("measures", {"ranking": table, "per_axis": per_axis}, claims_frame([row]))

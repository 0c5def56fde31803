"""Batch functional dimension (seed 001, Bona-Pellissier et al. 2024) on the bfd sweep.

- over training: per run and split, Kendall τ (scipy) of BFD against step; across runs, a
  one-sided Wilcoxon signed-rank test that the τ's are below 0. Summarizing each run first
  keeps the autocorrelated evals of one run from counting as independent evidence.
- train vs test vs random inputs: BFD at each run's last eval, paired one-sided Wilcoxon
  signed-rank tests over runs of train − random < 0 and test − random < 0.

Verdicts (`analysis.verdict`): the Wilcoxon signed-rank test, both one-sided p-values combined
into a two-sided one; significant below 0 → supported, above 0 → contradicted, otherwise (or
every difference exactly 0) inconclusive; fewer than `MIN_RUNS` runs → insufficient data.
"""
from __future__ import annotations

import warnings

import numpy as np
import polars as pl
from scipy import stats

from analysis.result import INCONCLUSIVE, Analysis, claim, claims_frame, insufficient
from analysis.verdict import decide, wilcoxon_two_sided
from store.db import query

MIN_RUNS = 6  # the smallest n at which an exact two-sided Wilcoxon test can reach p < 0.05
SOURCE = "seed 001 abstract and §6 (experiments)"
_BASE = ("FROM evals e JOIN runs r ON e.run_id = r.run_id "
         "WHERE r.status = 'completed' AND r.sweep = 'bfd' AND e.bfd IS NOT NULL")
_SERIES_SQL = f"""
SELECT e.run_id, r.seed, e.split, e.step, e.bfd::DOUBLE AS bfd, e.bfd::DOUBLE / nullif(e.bfd_max, 0) AS bfd_frac
{_BASE} ORDER BY e.run_id, e.split, e.step
"""
_MEAN_SQL = f"""
SELECT e.split, e.step, count(*) AS n_runs, avg(e.bfd) AS bfd_mean,
       avg(e.bfd::DOUBLE / nullif(e.bfd_max, 0)) AS bfd_frac_mean
{_BASE} GROUP BY ALL ORDER BY e.split, e.step
"""
_LAST_SQL = f"""
WITH last AS (SELECT e.run_id, max(e.step) AS step {_BASE} GROUP BY e.run_id)
SELECT e.run_id, r.seed,
       max(e.bfd) FILTER (WHERE e.split = 'train')::DOUBLE AS bfd_train,
       max(e.bfd) FILTER (WHERE e.split = 'test')::DOUBLE AS bfd_test,
       max(e.bfd) FILTER (WHERE e.split = 'random')::DOUBLE AS bfd_random
{_BASE} AND (e.run_id, e.step) IN (SELECT (run_id, step) FROM last)
GROUP BY ALL
"""
_TAU_SCHEMA = {"run_id": pl.String, "seed": pl.Int64, "split": pl.String, "n_evals": pl.Int64,
               "kendall_tau": pl.Float64, "p_value": pl.Float64}


def _run_tau(g: pl.DataFrame) -> pl.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant series: τ is NaN, dropped below
        res = stats.kendalltau(g["step"].to_numpy(), g["bfd"].to_numpy())
    return pl.DataFrame([{"run_id": g["run_id"][0], "seed": g["seed"][0], "split": g["split"][0],
                          "n_evals": g.height, "kendall_tau": float(res.statistic), "p_value": float(res.pvalue)}],
                        schema=_TAU_SCHEMA).fill_nan(None)


def _row(text: str, method: str, d: np.ndarray, seeds: pl.Series) -> dict:
    n, n_seeds = int(np.isfinite(d).sum()), seeds.n_unique()
    if n < MIN_RUNS:
        return insufficient(text, "bfd", method, f"needs ≥ {MIN_RUNS} runs; have {n}", kind="paper", source=SOURCE,
                            n_runs=n, n_seeds=n_seeds)
    res = wilcoxon_two_sided(d)
    if res is None:
        return claim(text, "bfd", f"{method}; every difference is exactly 0", INCONCLUSIVE, kind="paper",
                     source=SOURCE, value=0.0, n_runs=n, n_seeds=n_seeds)
    p, agrees = res
    return claim(text, "bfd", f"{method}; {int((d < 0).sum())} of {n} runs in the stated direction",
                 decide(p, agrees), kind="paper", source=SOURCE, value=float(np.median(d)), p_value=p,
                 n_runs=n, n_seeds=n_seeds)


def analyze(con) -> Analysis:
    series = query(con, _SERIES_SQL)
    taus = (series.group_by("run_id", "split", maintain_order=True).map_groups(_run_tau)
            if series.height else pl.DataFrame(schema=_TAU_SCHEMA))
    last = query(con, _LAST_SQL)
    rows = []
    for split in ("train", "test"):
        t = taus.filter(pl.col("split") == split).drop_nulls("kendall_tau")
        rows.append(_row(f"BFD decreases during training ({split} inputs)",
                         "per-run Kendall τ of BFD vs step; two-sided Wilcoxon signed-rank of τ over runs (claim: τ < 0); "
                         "value = median τ", t["kendall_tau"].to_numpy(), t["seed"]))
    for split in ("train", "test"):
        pair = last.drop_nulls([f"bfd_{split}", "bfd_random"])
        d = (pair[f"bfd_{split}"] - pair["bfd_random"]).to_numpy()
        rows.append(_row(f"BFD on {split} inputs is lower than on random inputs",
                         f"BFD at the last eval, paired two-sided Wilcoxon signed-rank of {split} − random (claim: < 0) over "
                         "runs; value = median difference", d, pair["seed"]))
    tables = {"over_training": query(con, _MEAN_SQL), "per_run_trend": taus, "last_eval": last}
    return Analysis("bfd", tables, claims_frame(rows))

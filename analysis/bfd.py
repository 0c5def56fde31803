"""Batch functional dimension (seed 001, Bona-Pellissier et al. 2024) on the bfd sweep, from the
`fdim` table (docs/EXPERIMENTS.md, bfd), one set of rows per output (`OUTPUTS`: softmax, logits).

- over training: per run, Kendall τ (scipy) of the training-input BFD against step; across runs
  a Wilcoxon signed-rank test of the τ's (claim: < 0). Summarizing each run first keeps the
  autocorrelated evals of one run from counting as independent evidence.
- the computable full functional dimension (FFD) of a run at an eval: the largest rank over its
  random-input batches (`split = 'random'`) at the largest `n_inputs` — the plateau of the
  nested batches. At the last eval:
  - train (test) BFD below the FFD: paired Wilcoxon of BFD − FFD over runs (claim: < 0);
  - the FFD close to the ceiling `bfd_max` (P − #hidden for logits, docs/EXPERIMENTS.md):
    Wilcoxon of FFD / ceiling − (1 − `FFD_MARGIN`) (claim: > 0);
  - `check`: the nested batches have plateaued — the rank at the largest n equals the rank at
    the next smaller n in every run (else the FFD is only a lower bound).

Verdicts (`analysis.verdict`): the Wilcoxon signed-rank test, two-sided; significant in the
claim's direction → supported, against → contradicted, otherwise (or every difference exactly
0) inconclusive; fewer than `MIN_RUNS` runs → insufficient data. The check: supported when
every run has plateaued, contradicted otherwise (the row names how many did not).
"""
from __future__ import annotations

import warnings

import numpy as np
import polars as pl
from scipy import stats

from analysis.result import CONTRADICTED, INCONCLUSIVE, SUPPORTED, Analysis, claim, claims_frame, insufficient
from analysis.verdict import decide, wilcoxon_two_sided
from store.db import query

MIN_RUNS = 6  # the smallest n at which an exact two-sided Wilcoxon test can reach p < 0.05
OUTPUTS = ("softmax", "logits")
PLATEAU_CLAIM = "the nested random batches have reached their plateau at the last eval ({output})"
FFD_MARGIN = 0.05  # "close to the number of parameters": within 5% of the ceiling (docs/EXPERIMENTS.md)
SOURCE = "seed 001 abstract and §6 (experiments)"
PAPER = {"kind": "paper", "source": SOURCE}
_BASE = ("FROM fdim f JOIN runs r ON f.run_id = r.run_id "
         "WHERE r.status = 'completed' AND r.sweep = 'bfd' AND f.bfd IS NOT NULL")
_SERIES_SQL = f"""
SELECT f.run_id, r.seed, r.dataset, f.output, f.split, f.step, f.bfd::DOUBLE AS bfd,
       f.bfd::DOUBLE / nullif(f.bfd_max, 0) AS bfd_frac
{_BASE} AND f.split IN ('train', 'test') ORDER BY f.run_id, f.split, f.step
"""
# Per run and eval: the FFD (max rank at the largest random batch), the rank at the next smaller size, the ceiling.
_FFD_SQL = f"""
WITH rnd AS (
    SELECT f.run_id, f.step, f.n_inputs, max(f.bfd) AS bfd, max(f.bfd_max) AS bfd_max {_BASE} AND f.split = 'random'
    GROUP BY ALL
), ranked AS (
    SELECT *, row_number() OVER (PARTITION BY run_id, step ORDER BY n_inputs DESC) AS k FROM rnd
)
SELECT a.run_id, a.step, a.n_inputs, a.bfd::DOUBLE AS ffd, a.bfd_max::DOUBLE AS ceiling,
       b.n_inputs AS n_prev, b.bfd::DOUBLE AS ffd_prev
FROM ranked a LEFT JOIN ranked b ON a.run_id = b.run_id AND a.step = b.step AND b.k = 2
WHERE a.k = 1 ORDER BY a.run_id, a.step
"""
_LAST_SQL = f"""
WITH last AS (SELECT f.run_id, max(f.step) AS step {_BASE} GROUP BY f.run_id), ffd AS ({_FFD_SQL})
SELECT r.run_id, r.seed, r.dataset, any_value(f.output) AS output, last.step,
       max(f.bfd) FILTER (WHERE f.split = 'train')::DOUBLE AS bfd_train,
       max(f.bfd) FILTER (WHERE f.split = 'test')::DOUBLE AS bfd_test,
       any_value(ffd.ffd) AS ffd, any_value(ffd.ceiling) AS ceiling, any_value(ffd.n_inputs) AS n_inputs,
       any_value(ffd.ffd_prev) AS ffd_prev, any_value(ffd.n_prev) AS n_prev
FROM fdim f JOIN runs r ON f.run_id = r.run_id JOIN last ON last.run_id = f.run_id AND last.step = f.step
LEFT JOIN ffd ON ffd.run_id = f.run_id AND ffd.step = f.step
WHERE r.status = 'completed' AND r.sweep = 'bfd'
GROUP BY r.run_id, r.seed, r.dataset, last.step ORDER BY r.run_id
"""
_MEAN_SQL = f"""
SELECT r.dataset, f.output, f.split, f.step, count(*) AS n_runs, avg(f.bfd) AS bfd_mean,
       avg(f.bfd::DOUBLE / nullif(f.bfd_max, 0)) AS bfd_frac_mean
{_BASE} AND f.split IN ('train', 'test') GROUP BY ALL ORDER BY ALL
"""
_TAU_SCHEMA = {"run_id": pl.String, "seed": pl.Int64, "output": pl.String, "split": pl.String,
               "n_evals": pl.Int64, "kendall_tau": pl.Float64, "p_value": pl.Float64}


def _run_tau(g: pl.DataFrame) -> pl.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant series: τ is NaN, dropped below
        res = stats.kendalltau(g["step"].to_numpy(), g["bfd"].to_numpy())
    return pl.DataFrame([{"run_id": g["run_id"][0], "seed": g["seed"][0], "output": g["output"][0],
                          "split": g["split"][0], "n_evals": g.height, "kendall_tau": float(res.statistic),
                          "p_value": float(res.pvalue)}], schema=_TAU_SCHEMA).fill_nan(None)


def _row(text: str, method: str, d: np.ndarray, seeds: pl.Series, direction: int = -1) -> dict:
    """Wilcoxon row on differences `d` whose claimed sign is `direction`."""
    d = d[np.isfinite(d)]
    n, n_seeds = len(d), seeds.n_unique()
    if n < MIN_RUNS:
        return insufficient(text, "bfd", method, f"needs ≥ {MIN_RUNS} runs; have {n}", n_runs=n, n_seeds=n_seeds,
                            **PAPER)
    res = wilcoxon_two_sided(d)
    if res is None:
        return claim(text, "bfd", f"{method}; every difference is exactly 0", INCONCLUSIVE, **PAPER, value=0.0,
                     n_runs=n, n_seeds=n_seeds)
    p, below = res
    n_dir = int((np.sign(d) == direction).sum())
    return claim(text, "bfd", f"{method}; {n_dir} of {n} runs in the stated direction", decide(p, below == (direction < 0)),
                 **PAPER, value=float(np.median(d)), p_value=p, n_runs=n, n_seeds=n_seeds)


def _plateau_row(last: pl.DataFrame, output: str) -> dict:
    text = PLATEAU_CLAIM.format(output=output)
    method = "rank at the largest random batch = rank at the next smaller one, every run (else the FFD is a lower bound)"
    ok = last.drop_nulls(["ffd", "ffd_prev"])
    n, n_seeds = ok.height, ok["seed"].n_unique()
    kw = {"kind": "check", "source": "seed 001 sampling theorem (computable full functional dimension)"}
    if not n:
        return insufficient(text, "bfd", method, "no run with two random batch sizes", **kw)
    short = ok.filter(pl.col("ffd") != pl.col("ffd_prev"))
    stat = f"{method}; {short.height} of {n} runs not at the plateau"
    if short.height:
        stat += f" (e.g. run {short['run_id'][0]}: {short['ffd_prev'][0]:.0f} at n={short['n_prev'][0]}, " \
                f"{short['ffd'][0]:.0f} at n={short['n_inputs'][0]})"
    return claim(text, "bfd", stat, CONTRADICTED if short.height else SUPPORTED, value=float(short.height),
                 n_runs=n, n_seeds=n_seeds, **kw)


def _rows(taus: pl.DataFrame, last: pl.DataFrame, output: str) -> list[dict]:
    t = taus.filter((pl.col("output") == output) & (pl.col("split") == "train")).drop_nulls("kendall_tau")
    last = last.filter(pl.col("output") == output)
    rows = [_row(f"BFD on training inputs decreases during training ({output})",
                 "per-run Kendall τ of training-input BFD vs step; two-sided Wilcoxon signed-rank of τ over runs "
                 "(claim: τ < 0); value = median τ", t["kendall_tau"].to_numpy(), t["seed"])]
    for split in ("train", "test"):
        pair = last.drop_nulls([f"bfd_{split}", "ffd"])
        rows.append(_row(f"BFD on {split} inputs at the end of training is below the computable full functional "
                         f"dimension ({output})",
                         f"last eval, paired two-sided Wilcoxon signed-rank of BFD({split}) − FFD (max rank at the "
                         "largest nested random batch) over runs (claim: < 0); value = median difference",
                         (pair[f"bfd_{split}"] - pair["ffd"]).to_numpy(), pair["seed"]))
    frac = last.drop_nulls(["ffd", "ceiling"]).filter(pl.col("ceiling") > 0)
    rows.append(_row(f"the computable full functional dimension stays close to its ceiling P − #hidden ({output})",
                     f"last eval, two-sided Wilcoxon signed-rank of FFD / bfd_max − {1 - FFD_MARGIN:g} over runs "
                     f"(claim: > 0, i.e. within {FFD_MARGIN:.0%} of the ceiling); value = median of that difference",
                     (frac["ffd"] / frac["ceiling"] - (1 - FFD_MARGIN)).to_numpy(), frac["seed"], direction=+1))
    rows.append(_plateau_row(last, output))
    return rows


def analyze(con) -> Analysis:
    series = query(con, _SERIES_SQL)
    taus = (series.group_by("run_id", "output", "split", maintain_order=True).map_groups(_run_tau)
            if series.height else pl.DataFrame(schema=_TAU_SCHEMA))
    last = query(con, _LAST_SQL)
    rows = [r for output in OUTPUTS for r in _rows(taus, last, output)]
    tables = {"over_training": query(con, _MEAN_SQL), "per_run_trend": taus, "last_eval": last,
              "ffd_over_training": query(con, _FFD_SQL)}
    return Analysis("bfd", tables, claims_frame(rows))

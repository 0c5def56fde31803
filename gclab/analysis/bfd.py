"""Batch functional dimension (the BFD paper, Bona-Pellissier et al. 2024) on the bfd sweep, from the
`fdim` table (docs/EXPERIMENTS.md, bfd): one set of rows per dataset (never pooled: their ceilings
differ), each claim ONE test over both output heads (softmax, logits: replications of one claim).

- over training: per run, the change of the training-input BFD from the first to the last eval
  as a fraction of the ceiling (claim: < 0); per-run Kendall τ of BFD against step is tabled.
  Summarizing each run first keeps the autocorrelated evals of one run from counting as
  independent evidence.
- the computable full functional dimension (FFD) of a run at an eval: the largest rank over its
  random-input batches (`split = 'random'`) at the largest `n_inputs` — the plateau of the
  nested batches. At the last eval:
  - train (test) BFD below the FFD: (BFD − FFD) / ceiling per run (claim: < 0);
  - the FFD close to the ceiling `bfd_max` (P − #hidden for logits, docs/EXPERIMENTS.md):
    FFD / ceiling − (1 − `FFD_MARGIN`) per run (claim: > 0);
  - both are `insufficient data` unless every run of the dataset has plateaued: otherwise the FFD
    is only a lower bound and a comparison against it cannot be read;
  - `check`: the nested batches have plateaued — in every run the rank at the largest n equals the
    rank at the next smaller n, or equals its ceiling (no batch can exceed `bfd_max`, so a rank
    there is the FFD exactly); else the FFD is only a lower bound.

Test (`_row`): OLS of the per-run value on the effect-coded head (±1/2), so the intercept is the
mean of the heads' means; its two-sided t-test (statsmodels, pooled residual variance) goes to
`analysis.verdict.judge`: significant in the claim's direction → supported, against →
contradicted, inside ±δ by TOST → absent, otherwise (or no variance across runs) inconclusive;
too few runs → insufficient data. Why not a rank test: 3 runs per head cannot reach a p that
Holm lets through. The check: supported when every run has plateaued, contradicted otherwise
(the row names how many did not).
"""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import statsmodels.api as sm
from scipy import stats

from gclab.analysis.deltas import declared
from gclab.analysis.result import CONTRADICTED, INCONCLUSIVE, SUPPORTED, Analysis, claim, claims_frame, insufficient
from gclab.analysis.verdict import judge
from gclab.store.db import query

MIN_RUNS = 3
OUTPUTS = ("softmax", "logits")
DATASETS = ("digits", "mnist1d")  # the bfd sweep's datasets: their rows stand when nothing is stored
PLATEAU_CLAIM = "the nested random batches have reached their plateau at the last eval ({dataset})"
FFD_MARGIN = 0.05  # "close to the number of parameters": within 5% of the ceiling (docs/EXPERIMENTS.md)
SOURCE = "BFD paper abstract and §6 (experiments)"
PAPER = {"kind": "paper", "source": SOURCE, **declared("bfd:fraction")}
_BASE = (
    "FROM fdim f JOIN runs r ON f.run_id = r.run_id "
    "WHERE r.status = 'completed' AND r.sweep = 'bfd' AND f.bfd IS NOT NULL"
)
_SERIES_SQL = f"""
SELECT f.run_id, r.seed, r.dataset, f.output, f.split, f.step, f.bfd::DOUBLE AS bfd, f.bfd_max::DOUBLE AS bfd_max,
       f.bfd::DOUBLE / nullif(f.bfd_max, 0) AS bfd_frac
{_BASE} AND f.split IN ('train', 'test') ORDER BY f.run_id, f.split, f.step
"""
# Per run and eval: the FFD (max rank at the largest random batch), the rank at the next smaller size, the ceiling.
_FFD_SQL = f"""
WITH rnd AS (
    SELECT f.run_id, r.dataset, f.output, f.step, f.n_inputs, max(f.bfd) AS bfd, max(f.bfd_max) AS bfd_max
    {_BASE} AND f.split = 'random' GROUP BY ALL
), ranked AS (
    SELECT *, row_number() OVER (PARTITION BY run_id, step ORDER BY n_inputs DESC) AS k FROM rnd
)
SELECT a.run_id, a.dataset, a.output, a.step, a.n_inputs, a.bfd::DOUBLE AS ffd, a.bfd_max::DOUBLE AS ceiling,
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
_TAU_SCHEMA = {
    "run_id": pl.String,
    "seed": pl.Int64,
    "output": pl.String,
    "split": pl.String,
    "n_evals": pl.Int64,
    "kendall_tau": pl.Float64,
    "p_value": pl.Float64,
}


def _run_tau(g: pl.DataFrame) -> pl.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant series: τ is NaN, dropped below
        res = stats.kendalltau(g["step"].to_numpy(), g["bfd"].to_numpy())
    return pl.DataFrame(
        [
            {
                "run_id": g["run_id"][0],
                "seed": g["seed"][0],
                "output": g["output"][0],
                "split": g["split"][0],
                "n_evals": g.height,
                "kendall_tau": float(res.statistic),
                "p_value": float(res.pvalue),
            }
        ],
        schema=_TAU_SCHEMA,
    ).fill_nan(None)


def _row(text: str, method: str, runs: pl.DataFrame, direction: int = -1, reason: str | None = None) -> dict:
    """One test of a claim over both output heads: `runs` has per-run `d` (claimed sign `direction`),
    `output` and `seed`. OLS of d on the effect-coded head (±1/2), so the intercept is the mean of the
    heads' means; its two-sided t-test (pooled residual variance) decides. `reason`: cannot be tested."""
    runs = runs.filter(pl.col("d").is_finite())
    d, n, n_seeds = runs["d"].to_numpy(), runs.height, runs["seed"].n_unique()
    heads = sorted(set(runs["output"].to_list()))
    method += (
        "; OLS of the per-run value on the output head (effect-coded: the intercept is the mean of the heads' "
        "means), two-sided t-test of the intercept: the heads are replications of one claim, one test; "
        "value = intercept"
    )
    if reason or n < MIN_RUNS + len(heads) - 1:
        why = reason or f"needs ≥ {MIN_RUNS + len(heads) - 1} runs over {len(heads)} heads; have {n}"
        return insufficient(text, "bfd", method, why, n_runs=n, n_seeds=n_seeds, **PAPER)
    if np.ptp(d) == 0:
        return claim(
            text,
            "bfd",
            f"{method}; every run gives {d[0]:.4g}: no variance to test",
            INCONCLUSIVE,
            **PAPER,
            value=float(d[0]),
            n_runs=n,
            n_seeds=n_seeds,
        )
    code = [(runs["output"] == h).cast(pl.Float64).to_numpy() - 1 / len(heads) for h in heads[1:]]
    X = np.column_stack([np.ones(n), *[c * len(heads) / 2 for c in code]])
    fit = sm.OLS(d, X).fit()
    est, se, p = float(fit.params[0]), float(fit.bse[0]), float(fit.pvalues[0])
    lo, hi = (float(v) for v in fit.conf_int(0.05)[0])
    n_dir = int((np.sign(d) == direction).sum())
    j = judge(est, se, float(fit.df_resid), delta=PAPER["delta"], direction=direction, n=n, p_value=p)
    return claim(
        text,
        "bfd",
        f"{method}; {n_dir} of {n} runs in the stated direction; {j.text('mean')}",
        j.verdict,
        **PAPER,
        value=est,
        p_value=p,
        ci=(lo, hi),
        n_runs=n,
        n_seeds=n_seeds,
        seeds_needed=j.seeds_needed,
    )


def _plateau(last: pl.DataFrame) -> tuple[int, pl.DataFrame]:
    """(runs with two random batch sizes, those whose rank still rose between the two largest and is
    below its ceiling). A rank at the ceiling is the FFD whatever the previous size gave: no batch exceeds it."""
    ok = last.drop_nulls(["ffd", "ffd_prev"])
    return ok.height, ok.filter((pl.col("ffd") != pl.col("ffd_prev")) & (pl.col("ffd") < pl.col("ceiling")))


def _plateau_row(last: pl.DataFrame, dataset: str) -> dict:
    text = PLATEAU_CLAIM.format(dataset=dataset)
    method = (
        "rank at the largest random batch = rank at the next smaller one, or = its ceiling bfd_max (which no "
        "batch exceeds), every run of both heads (else the FFD is a lower bound)"
    )
    n, short = _plateau(last)
    n_seeds = last["seed"].n_unique()
    kw = {"kind": "check", "source": "BFD paper sampling theorem (computable full functional dimension)"}
    if not n:
        return insufficient(text, "bfd", method, "no run with two random batch sizes", **kw)
    stat = f"{method}; {short.height} of {n} runs not at the plateau"
    if short.height:
        stat += (
            f" (e.g. run {short['run_id'][0]}: {short['ffd_prev'][0]:.0f} at n={short['n_prev'][0]}, "
            f"{short['ffd'][0]:.0f} at n={short['n_inputs'][0]})"
        )
    return claim(
        text,
        "bfd",
        stat,
        CONTRADICTED if short.height else SUPPORTED,
        value=float(short.height),
        n_runs=n,
        n_seeds=n_seeds,
        **kw,
    )


def _change(series: pl.DataFrame) -> pl.DataFrame:
    """Per run: training-input BFD at the last eval minus at the first, as a fraction of the ceiling."""
    s = series.filter(pl.col("split") == "train")
    return (
        s.group_by("run_id")
        .agg(
            pl.col("seed").first(),
            pl.col("output").first(),
            pl.len().alias("n_evals"),
            (
                (pl.col("bfd").sort_by("step").last() - pl.col("bfd").sort_by("step").first()) / pl.col("bfd_max").max()
            ).alias("d"),
        )
        .filter(pl.col("n_evals") >= 2)
        .sort("run_id")  # group_by's order is arbitrary; the tests' sums must not depend on it
    )


def _rows(series: pl.DataFrame, last: pl.DataFrame, dataset: str) -> list[dict]:
    """The claims on one dataset (never pooled across datasets: their ceilings differ), each one test
    over both output heads; the rows against the FFD need every run at its plateau."""
    series, last = series.filter(pl.col("dataset") == dataset), last.filter(pl.col("dataset") == dataset)
    n, short = _plateau(last)
    lower_bound = (
        None
        if n and not short.height
        else f"the nested random batches did not plateau in {short.height} of {n} runs, so the FFD is only a "
        "lower bound"
        if n
        else "no run with two random batch sizes, so the plateau is unchecked"
    )
    rows = [
        _row(
            f"BFD on training inputs decreases during training ({dataset})",
            "per run, training-input BFD at the last eval − at the first, / bfd_max (claim: < 0)",
            _change(series),
        )
    ]
    for split in ("train", "test"):
        pair = last.drop_nulls([f"bfd_{split}", "ffd", "ceiling"])
        rows.append(
            _row(
                f"BFD on {split} inputs at the end of training is below the computable full functional "
                f"dimension ({dataset})",
                f"last eval, per run (BFD({split}) − FFD) / bfd_max, FFD = max rank at the largest nested "
                "random batch (claim: < 0)",
                pair.select(
                    "seed", "output", ((pl.col(f"bfd_{split}") - pl.col("ffd")) / pl.col("ceiling")).alias("d")
                ),
                reason=lower_bound,
            )
        )
    frac = last.drop_nulls(["ffd", "ceiling"]).filter(pl.col("ceiling") > 0)
    rows.append(
        _row(
            f"the computable full functional dimension stays close to its ceiling P − #hidden ({dataset})",
            f"last eval, per run FFD / bfd_max − {1 - FFD_MARGIN:g} (claim: > 0, i.e. within "
            f"{FFD_MARGIN:.0%} of the ceiling)",
            frac.select("seed", "output", (pl.col("ffd") / pl.col("ceiling") - (1 - FFD_MARGIN)).alias("d")),
            direction=+1,
            reason=lower_bound,
        )
    )
    rows.append(_plateau_row(last, dataset))
    return rows


def analyze(con) -> Analysis:
    series = query(con, _SERIES_SQL)
    taus = (
        series.group_by("run_id", "output", "split", maintain_order=True).map_groups(_run_tau)
        if series.height
        else pl.DataFrame(schema=_TAU_SCHEMA)
    )
    last = query(con, _LAST_SQL)
    datasets = sorted(set(last["dataset"].to_list())) or list(DATASETS)
    rows = [r for dataset in datasets for r in _rows(series, last, dataset)]
    ffd = query(con, _FFD_SQL)
    tables = {
        "over_training": query(con, _MEAN_SQL),
        "per_run_trend": taus,
        "last_eval": last,
        "ffd_over_training": ffd,
        # mean of ffd / ceiling over runs, per step: the full functional dimension's curve in the report
        "ffd_frac_over_training": ffd.group_by("dataset", "output", "step")
        .agg((pl.col("ffd") / pl.col("ceiling")).mean().alias("frac"), pl.len().cast(pl.Int64).alias("n_runs"))
        .sort("dataset", "output", "step"),
    }
    return Analysis("bfd", tables, claims_frame(rows))

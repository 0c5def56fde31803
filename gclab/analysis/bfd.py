"""Batch functional dimension (the BFD paper, Bona-Pellissier et al. 2024) on the bfd sweep, from the
`fdim` table (docs/EXPERIMENTS.md, bfd), one set of rows per output (`OUTPUTS`: softmax, logits).

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
  - `check`: the nested batches have plateaued — the rank at the largest n equals the rank at
    the next smaller n in every run (else the FFD is only a lower bound).

Verdicts (`analysis.verdict`): a two-sided one-sample t-test over runs of the per-run value
(scipy); significant in the claim's direction → supported, against → contradicted, otherwise
(or no variance across runs) inconclusive; fewer than `MIN_RUNS` runs → insufficient data.
Why not a rank test: the shipped sweep has 6 runs per output, and a signed-rank test over 6
runs cannot go below p = 1/32, which Holm's correction over the paper rows never lets through. The check: supported when
every run has plateaued, contradicted otherwise (the row names how many did not).
"""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
from scipy import stats

from gclab.analysis.deltas import declared
from gclab.analysis.result import CONTRADICTED, INCONCLUSIVE, SUPPORTED, Analysis, claim, claims_frame, insufficient
from gclab.analysis.verdict import judge
from gclab.store.db import query

MIN_RUNS = 3
OUTPUTS = ("softmax", "logits")
PLATEAU_CLAIM = "the nested random batches have reached their plateau at the last eval ({output})"
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


def _row(text: str, method: str, d: np.ndarray, seeds: pl.Series, direction: int = -1) -> dict:
    """t-test row on per-run values `d` whose claimed sign is `direction`."""
    d = d[np.isfinite(d)]
    n, n_seeds = len(d), seeds.n_unique()
    method += "; two-sided one-sample t-test over runs; value = mean"
    if n < MIN_RUNS:
        return insufficient(
            text, "bfd", method, f"needs ≥ {MIN_RUNS} runs; have {n}", n_runs=n, n_seeds=n_seeds, **PAPER
        )
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
    res = stats.ttest_1samp(d, 0.0)
    ci = res.confidence_interval(0.95)
    n_dir = int((np.sign(d) == direction).sum())
    se = float(d.std(ddof=1) / np.sqrt(n))
    j = judge(float(d.mean()), se, n - 1, delta=PAPER["delta"], direction=direction, n=n, p_value=float(res.pvalue))
    return claim(
        text,
        "bfd",
        f"{method}; {n_dir} of {n} runs in the stated direction; {j.text('mean')}",
        j.verdict,
        **PAPER,
        value=float(d.mean()),
        p_value=float(res.pvalue),
        ci=(ci.low, ci.high),
        n_runs=n,
        n_seeds=n_seeds,
        seeds_needed=j.seeds_needed,
    )


def _plateau_row(last: pl.DataFrame, output: str) -> dict:
    text = PLATEAU_CLAIM.format(output=output)
    method = (
        "rank at the largest random batch = rank at the next smaller one, every run (else the FFD is a lower bound)"
    )
    ok = last.drop_nulls(["ffd", "ffd_prev"])
    n, n_seeds = ok.height, ok["seed"].n_unique()
    kw = {"kind": "check", "source": "BFD paper sampling theorem (computable full functional dimension)"}
    if not n:
        return insufficient(text, "bfd", method, "no run with two random batch sizes", **kw)
    short = ok.filter(pl.col("ffd") != pl.col("ffd_prev"))
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


def _change(series: pl.DataFrame, output: str) -> pl.DataFrame:
    """Per run: training-input BFD at the last eval minus at the first, as a fraction of the ceiling."""
    s = series.filter((pl.col("output") == output) & (pl.col("split") == "train"))
    return (
        s.group_by("run_id")
        .agg(
            pl.col("seed").first(),
            pl.len().alias("n_evals"),
            (
                (pl.col("bfd").sort_by("step").last() - pl.col("bfd").sort_by("step").first()) / pl.col("bfd_max").max()
            ).alias("change"),
        )
        .filter(pl.col("n_evals") >= 2)
    )


def _rows(series: pl.DataFrame, last: pl.DataFrame, output: str) -> list[dict]:
    ch = _change(series, output)
    last = last.filter(pl.col("output") == output)
    rows = [
        _row(
            f"BFD on training inputs decreases during training ({output})",
            "per run, training-input BFD at the last eval − at the first, / bfd_max (claim: < 0)",
            ch["change"].to_numpy(),
            ch["seed"],
        )
    ]
    for split in ("train", "test"):
        pair = last.drop_nulls([f"bfd_{split}", "ffd", "ceiling"])
        rows.append(
            _row(
                f"BFD on {split} inputs at the end of training is below the computable full functional "
                f"dimension ({output})",
                f"last eval, per run (BFD({split}) − FFD) / bfd_max, FFD = max rank at the largest nested "
                "random batch (claim: < 0)",
                ((pair[f"bfd_{split}"] - pair["ffd"]) / pair["ceiling"]).to_numpy(),
                pair["seed"],
            )
        )
    frac = last.drop_nulls(["ffd", "ceiling"]).filter(pl.col("ceiling") > 0)
    rows.append(
        _row(
            f"the computable full functional dimension stays close to its ceiling P − #hidden ({output})",
            f"last eval, per run FFD / bfd_max − {1 - FFD_MARGIN:g} (claim: > 0, i.e. within "
            f"{FFD_MARGIN:.0%} of the ceiling)",
            (frac["ffd"] / frac["ceiling"] - (1 - FFD_MARGIN)).to_numpy(),
            frac["seed"],
            direction=+1,
        )
    )
    rows.append(_plateau_row(last, output))
    return rows


def analyze(con) -> Analysis:
    series = query(con, _SERIES_SQL)
    taus = (
        series.group_by("run_id", "output", "split", maintain_order=True).map_groups(_run_tau)
        if series.height
        else pl.DataFrame(schema=_TAU_SCHEMA)
    )
    last = query(con, _LAST_SQL)
    rows = [r for output in OUTPUTS for r in _rows(series, last, output)]
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

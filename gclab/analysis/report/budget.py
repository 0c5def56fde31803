"""When a chart may draw one mark per run, and the per-config spread it draws instead.

A layer with one mark per run inlines every run (and its tooltip config) into the page; above
`analysis.curves.ROW_BUDGET` rows Altair's row guard refuses it and validating it costs minutes.
There a section draws per grid point what its analysis computed (mean and CI) plus the 10–90%
band of the runs, and says so in its caption; the single runs stay in the store.
"""

from __future__ import annotations

import polars as pl

from gclab.analysis import curves

QUANTILES = (0.1, 0.9)


def per_run(n_rows: int) -> bool:
    """Whether a chart may draw one mark per row of a per-run table of `n_rows` rows."""
    return n_rows <= curves.ROW_BUDGET  # read at call time: tests lower the one budget


def aggregated_note(n_runs: int) -> str:
    return (
        f" {n_runs:,} runs are more than a chart draws one by one ({curves.ROW_BUDGET:,}): "
        "per-config mean and 10–90% band of the runs instead of dots; the points are in the store."
    )


def spread(runs: pl.DataFrame, by: list[str], metrics: list[str]) -> pl.DataFrame:
    """Per group of `by`: each metric's 10th and 90th percentile over its runs (`<m>_q10`, `<m>_q90`)
    and the number of runs `n` — the band a chart draws instead of one dot per run."""
    aggs = [
        pl.col(m).drop_nulls().quantile(q, interpolation="linear").alias(f"{m}_q{round(q * 100)}")
        for m in metrics
        for q in QUANTILES
    ]
    return runs.group_by(by).agg(*aggs, pl.len().alias("n")).sort(by)


def drawn_config(config: pl.DataFrame, *drawn: pl.DataFrame) -> pl.DataFrame:
    """The config rows of the runs a chart draws (never more: each is inlined into the page)."""
    ids = pl.concat([d.select("run_id") for d in drawn])["run_id"].unique().implode()
    return config.filter(pl.col("run_id").is_in(ids))

"""Means over seeds with their 95% Student-t intervals, for the tables the report draws.

`t_interval(mean, sd, n)`: mean ± t(1 − α/2, n − 1)·sd/√n (scipy.stats.t), null where n < 2.
`mean_ci(frame, by, values)`: per group of `by`, `<v>_mean`, `<v>_sd`, `<v>_n`, `<v>_lo`, `<v>_hi`
for each value column (nulls left out of the mean and the count).
"""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
from scipy import stats

from gclab.analysis.result import ALPHA


def t_interval(mean, sd, n) -> tuple[pl.Series, pl.Series]:
    """(lo, hi) of the (1 − α) t-interval of a mean from `n` values with sample sd `sd`; null when n < 2."""
    mean, sd, n = (np.asarray(pl.Series(v, dtype=pl.Float64).fill_null(np.nan)) for v in (mean, sd, n))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one value has no interval: NaN, then null
        lo, hi = stats.t.interval(1 - ALPHA, n - 1, loc=mean, scale=sd / np.sqrt(n))
    return pl.Series(lo, dtype=pl.Float64).fill_nan(None), pl.Series(hi, dtype=pl.Float64).fill_nan(None)


def mean_ci(frame: pl.DataFrame, by: list[str], values: list[str]) -> pl.DataFrame:
    """Per group of `by` (sorted by it): mean, sd, count and 95% t-interval of each value column."""
    agg = (
        frame.group_by(by)
        .agg(
            e
            for v in values
            for e in (
                pl.col(v).mean().alias(f"{v}_mean"),
                pl.col(v).std().alias(f"{v}_sd"),
                pl.col(v).count().alias(f"{v}_n"),
            )
        )
        .sort(by)
    )
    for v in values:
        lo, hi = t_interval(agg[f"{v}_mean"], agg[f"{v}_sd"], agg[f"{v}_n"])
        agg = agg.with_columns(lo.alias(f"{v}_lo"), hi.alias(f"{v}_hi"))
    return agg

"""Kendall τ-b of many groups at once, equal to scipy.stats.kendalltau(x, y).statistic per group.

Per group, over the pairs i < j of its rows with finite x and y: C − D = Σ sign(Δx)·sign(Δy), n0 the
number of pairs, n1 / n2 the pairs tied in x / in y; τ_b = (C − D) / √(n0 − n1) / √(n0 − n2),
clipped to [−1, 1], NaN when x or y is constant — scipy's formula, term for term, so the floats
agree. Small groups (the granulated Ψ of `analysis.measures` has thousands of groups of a few runs)
are counted by one self-join over all of them: scipy's per-call overhead would dominate. Groups
above `PAIRWISE_MAX` rows go to scipy, whose O(n log n) beats the O(n²) pairs there.
"""

from __future__ import annotations

import warnings

import polars as pl
from scipy import stats

PAIRWISE_MAX = 256  # rows of a group counted by pairs; larger groups call scipy


def _sign(a: str, b: str) -> pl.Expr:
    # comparisons, not sign(a − b): exact for any finite floats
    return (pl.col(a) > pl.col(b)).cast(pl.Int64) - (pl.col(a) < pl.col(b)).cast(pl.Int64)


def _pairwise(df: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    pairs = df.join(df, on=by, suffix="_r", nulls_equal=True).filter(pl.col("_i") < pl.col("_i_r"))
    sx, sy = _sign("x", "x_r"), _sign("y", "y_r")
    counts = pairs.group_by(by).agg(
        pl.len().cast(pl.Int64).alias("n0"),
        (sx == 0).sum().cast(pl.Int64).alias("n1"),
        (sy == 0).sum().cast(pl.Int64).alias("n2"),
        (sx * sy).sum().cast(pl.Int64).alias("c_minus_d"),
    )
    n0, n1, n2 = pl.col("n0"), pl.col("n1"), pl.col("n2")
    tau = (
        pl.col("c_minus_d").cast(pl.Float64) / (n0 - n1).cast(pl.Float64).sqrt() / (n0 - n2).cast(pl.Float64).sqrt()
    ).clip(-1.0, 1.0)
    return counts.select(*by, pl.when((n1 == n0) | (n2 == n0)).then(float("nan")).otherwise(tau).alias("tau"))


def _scipy(df: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    rows = []
    for key, g in df.group_by(by, maintain_order=True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # constant input → NaN, as in the pairwise path
            tau = float(stats.kendalltau(g["x"].to_numpy(), g["y"].to_numpy()).statistic)
        rows.append((*key, tau))
    return pl.DataFrame(rows, schema=[*((c, df.schema[c]) for c in by), ("tau", pl.Float64)], orient="row")


def group_tau_b(frame: pl.DataFrame, *, by: list[str], x: str, y: str) -> pl.DataFrame:
    """Columns `by` + tau: Kendall τ-b of `x` vs `y` within each group of `by`, sorted by `by`.

    Rows with a non-finite or null x or y are left out first; groups left with fewer than 2 rows
    are absent; τ is NaN where x or y is constant within the group (as scipy).
    """
    df = (
        frame.select(*by, pl.col(x).cast(pl.Float64).alias("x"), pl.col(y).cast(pl.Float64).alias("y"))
        .filter(pl.col("x").is_finite() & pl.col("y").is_finite())
        .with_columns(pl.len().over(by).alias("_n"))
        .filter(pl.col("_n") >= 2)
        .with_row_index("_i")
    )
    small = df.filter(pl.col("_n") <= PAIRWISE_MAX)
    large = df.filter(pl.col("_n") > PAIRWISE_MAX)
    parts = [_pairwise(small.drop("_n"), by)]
    if large.height:
        parts.append(_scipy(large, by))
    return pl.concat(parts).sort(by, nulls_last=True)

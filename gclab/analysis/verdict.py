"""From a test result to one of the four verdicts (docs/EXPERIMENTS.md, "Verdicts"), and Holm's
correction across the `paper` rows of one claims table.

Every directional claim is decided by a two-sided test at α whose estimate has a sign: a
significant result in the claim's direction is `supported`, a significant result against it
is `contradicted`, anything else is `inconclusive` (absence of evidence is never reported as
contradiction). Under no effect each of `supported` and `contradicted` happens with
probability ≤ α/2. A one-sided pair (p for, p against) maps to the two-sided p
min(1, 2·min(p_for, p_against)), so modules whose natural test is one-sided plug in unchanged.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
from scipy import stats
from statsmodels.stats.multitest import multipletests

from gclab.analysis.result import ALPHA, CONTRADICTED, INCONCLUSIVE, SUPPORTED

HOLM_NOTE = "not significant after Holm's correction over the paper rows"


def two_sided(p_for: float, p_against: float) -> tuple[float, bool]:
    """(two-sided p, estimate in the claim's direction) from the two one-sided p-values."""
    return min(1.0, 2.0 * min(p_for, p_against)), p_for <= p_against


def wilcoxon_two_sided(d: np.ndarray) -> tuple[float, bool] | None:
    """(two-sided p, differences below 0) of the Wilcoxon signed-rank test; None when every difference is 0.

    The signed-rank sum's null distribution by sign flips through scipy's permutation engine
    (exact for ≤ 13 runs, 9999 seeded resamples above): what `scipy.stats.wilcoxon` does with
    ties, but vectorized, which `make calibrate` needs (zeros add nothing to the sum)."""
    d = d[np.isfinite(d)]
    if not np.any(d != 0):
        return None
    ranks = stats.rankdata(np.abs(d))
    res = stats.permutation_test(
        (d,),
        lambda x, axis=-1: (np.sign(x) * ranks).sum(axis=axis),
        permutation_type="samples",
        vectorized=True,
        n_resamples=9999,
        rng=np.random.default_rng(0),
    )
    return float(res.pvalue), bool(res.statistic < 0)


def decide(p_two_sided: float | None, agrees: bool) -> str:
    """Verdict of a directional test: significant for → supported, against → contradicted, else inconclusive."""
    if p_two_sided is None or not math.isfinite(p_two_sided) or p_two_sided >= ALPHA:
        return INCONCLUSIVE
    return SUPPORTED if agrees else CONTRADICTED


def describe(verdict: str, what: str) -> str:
    """A short clause saying what the verdict rests on, for the statistic text."""
    return {
        SUPPORTED: f"significant in the claimed direction ({what})",
        CONTRADICTED: f"significant against the claimed direction ({what})",
    }.get(verdict, f"no significant effect in either direction at α={ALPHA} ({what})")


def holm(table: pl.DataFrame) -> pl.DataFrame:
    """Fill `p_adjusted` by Holm over the paper rows that have a p-value; a paper row whose verdict was
    significant but whose adjusted p is ≥ α becomes inconclusive (its statistic says why)."""
    mask = (pl.col("kind") == "paper") & pl.col("p_value").is_not_null()
    idx = table.with_row_index("_i").filter(mask)["_i"].to_list()
    if not idx:
        return table
    adjusted = multipletests(table["p_value"].gather(idx).to_numpy(), alpha=ALPHA, method="holm")[1]
    p_adj: list[float | None] = [None] * table.height
    for i, p in zip(idx, adjusted):
        p_adj[i] = float(p)
    out = table.with_columns(pl.Series("p_adjusted", p_adj, dtype=pl.Float64))
    demote = (pl.col("p_adjusted") >= ALPHA) & pl.col("verdict").is_in([SUPPORTED, CONTRADICTED])
    return out.with_columns(
        pl.when(demote).then(pl.col("statistic") + f"; {HOLM_NOTE}").otherwise(pl.col("statistic")).alias("statistic"),
        pl.when(demote).then(pl.lit(INCONCLUSIVE)).otherwise(pl.col("verdict")).alias("verdict"),
    )

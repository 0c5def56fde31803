"""From a test result to one of the verdicts (docs/EXPERIMENTS.md, "Verdicts"), and Holm's
correction within each declared family of `paper` rows of one claims table.

Every directional claim is decided by a two-sided test at α whose estimate has a sign: a
significant result in the claim's direction is `supported`, a significant result against it
is `contradicted`, anything else is `inconclusive` (absence of evidence is never reported as
contradiction). Under no effect each of `supported` and `contradicted` happens with
probability ≤ α/2. A one-sided pair (p for, p against) maps to the two-sided p
min(1, 2·min(p_for, p_against)), so modules whose natural test is one-sided plug in unchanged.

`judge` adds evidence of absence for estimates with a standard error: when the two-sided test is
not significant, Schuirmann's TOST (two one-sided t-tests at α against −δ and +δ) calls the row
`absent` if it puts the effect inside ±δ; otherwise it stays `inconclusive` and says how many
seeds would give the two-sided test 80% power at δ with the variance observed (statsmodels
`TTestPower` on the per-seed sd se·√n).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower

from gclab.analysis.result import ABSENT, ALPHA, CONTRADICTED, INCONCLUSIVE, SUPPORTED

HOLM_NOTE = "not significant after Holm's correction within its family"
POWER = 0.8  # the power `seeds_needed` is computed for
MAX_SEEDS = 10_000  # beyond this the answer is "not at this scale"; reported as the cap
# Above this many differences the signed-rank test uses its normal approximation: 9,999 sign-flip
# resamples of 19,315 runs took 86 s, and the approximation's error in p is < 1e-3 this far out.
WILCOXON_RESAMPLED_MAX = 1_000


def two_sided(p_for: float, p_against: float) -> tuple[float, bool]:
    """(two-sided p, estimate in the claim's direction) from the two one-sided p-values."""
    return min(1.0, 2.0 * min(p_for, p_against)), p_for <= p_against


def wilcoxon_two_sided(d: np.ndarray) -> tuple[float, bool] | None:
    """(two-sided p, differences below 0) of the Wilcoxon signed-rank test; None when every difference is 0.

    The signed-rank sum's null distribution by sign flips through scipy's permutation engine
    (exact for ≤ 13 runs, 9999 seeded resamples above): what `scipy.stats.wilcoxon` does with
    ties, but vectorized, which `make calibrate` needs (zeros add nothing to the sum). Above
    `WILCOXON_RESAMPLED_MAX` differences, scipy's normal approximation with the same zeros (Pratt)
    and its tie correction."""
    d = d[np.isfinite(d)]
    if not np.any(d != 0):
        return None
    ranks = stats.rankdata(np.abs(d))
    if d.size > WILCOXON_RESAMPLED_MAX:
        approx = stats.wilcoxon(d, zero_method="pratt", method="approx")
        return float(approx.pvalue), bool((np.sign(d) * ranks).sum() < 0)
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
        ABSENT: f"shown inside ±δ by an equivalence test at α={ALPHA} ({what})",
    }.get(verdict, f"no significant effect in either direction at α={ALPHA} ({what})")


@dataclass(frozen=True)
class Judgement:
    """What `judge` decided: the verdict, the two-sided p, TOST's p and the seeds for 80% power at δ."""

    verdict: str
    p_value: float
    p_tost: float | None
    seeds_needed: int | None

    def text(self, what: str) -> str:
        """`describe` plus the TOST p and, for inconclusive rows, the seeds that would decide."""
        out = describe(self.verdict, what)
        if self.p_tost is not None:
            out += f"; TOST within ±δ p = {self.p_tost:.3g}"
        if self.verdict == INCONCLUSIVE and self.seeds_needed is not None:
            more = "≥ " if self.seeds_needed >= MAX_SEEDS else ""
            out += f"; {more}{self.seeds_needed} seeds would give {POWER:.0%} power at δ"
        return out


def tost_p(estimate: float, se: float, df: float, delta: float) -> float:
    """Schuirmann's TOST p-value that |effect| < δ: the larger of the two one-sided t-test p-values."""
    p_above = stats.t.sf((estimate + delta) / se, df)  # H0: effect ≤ −δ
    p_below = stats.t.cdf((estimate - delta) / se, df)  # H0: effect ≥ +δ
    return float(max(p_above, p_below))


def seeds_for_power(se: float, n: int, delta: float) -> int | None:
    """Seeds giving a two-sided one-sample t-test power `POWER` at effect δ when one seed's sd is se·√n."""
    sd = se * math.sqrt(n)
    if not (math.isfinite(sd) and sd > 0 and delta > 0):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # solve_power warns when its root search hits a bound
        try:
            nobs = TTestPower().solve_power(effect_size=delta / sd, alpha=ALPHA, power=POWER, alternative="two-sided")
        except (ValueError, RuntimeError):
            nobs = float("nan")
    nobs = float(np.squeeze(nobs))
    if not math.isfinite(nobs) or nobs > MAX_SEEDS:
        return MAX_SEEDS if delta / sd < 1 else 2
    return max(2, math.ceil(nobs))


def judge(
    estimate: float,
    se: float,
    df: float,
    *,
    delta: float | None,
    direction: int,
    n: int,
    p_value: float | None = None,
) -> Judgement:
    """Verdict of a directional estimate with standard error `se` on `df` degrees of freedom.

    Significant (two-sided t, or `p_value` when the row's own test gives it) with `direction`'s
    sign → supported, against → contradicted; else TOST inside ±δ → absent; else inconclusive.
    `n`: the independent units (seeds) behind `se`, for `seeds_needed`; no δ → no TOST, no seeds."""
    ok = all(math.isfinite(v) for v in (estimate, se, df)) and se > 0 and df > 0
    if p_value is None:
        p_value = float(2 * stats.t.sf(abs(estimate / se), df)) if ok else float("nan")
    verdict = decide(p_value, bool(np.sign(estimate) == direction))
    if not ok or delta is None:
        return Judgement(verdict, p_value, None, None)
    p_tost = tost_p(estimate, se, df, delta)
    if verdict == INCONCLUSIVE and p_tost < ALPHA:
        verdict = ABSENT
    return Judgement(verdict, p_value, p_tost, seeds_for_power(se, n, delta))


def holm(table: pl.DataFrame) -> pl.DataFrame:
    """Fill `p_adjusted` by Holm within each `family` of the paper rows that have a p-value; a paper row
    whose verdict was significant but whose adjusted p is ≥ α becomes inconclusive (its statistic says
    why). Rows of different families never share a correction (each family is one figure of one paper)."""
    mask = (pl.col("kind") == "paper") & pl.col("p_value").is_not_null()
    tested = table.with_row_index("_i").filter(mask)
    if not tested.height:
        return table
    p_adj: list[float | None] = [None] * table.height
    for _, group in tested.group_by("family", maintain_order=True):
        adjusted = multipletests(group["p_value"].to_numpy(), alpha=ALPHA, method="holm")[1]
        for i, p in zip(group["_i"].to_list(), adjusted):
            p_adj[i] = float(p)
    out = table.with_columns(pl.Series("p_adjusted", p_adj, dtype=pl.Float64))
    demote = (pl.col("p_adjusted") >= ALPHA) & pl.col("verdict").is_in([SUPPORTED, CONTRADICTED])
    return out.with_columns(
        pl.when(demote).then(pl.col("statistic") + f"; {HOLM_NOTE}").otherwise(pl.col("statistic")).alias("statistic"),
        pl.when(demote).then(pl.lit(INCONCLUSIVE)).otherwise(pl.col("verdict")).alias("verdict"),
    )

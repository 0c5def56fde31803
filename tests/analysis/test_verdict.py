"""`analysis.verdict.judge` (TOST, seeds for 80% power) against independent float64 computations, and the
δ/family table of docs/EXPERIMENTS.md against `analysis.deltas.DELTAS` (the one definition)."""

import math
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.weightstats import DescrStatsW

from gclab.analysis.deltas import DELTAS, declared
from gclab.analysis.result import ABSENT, ALPHA, CONTRADICTED, INCONCLUSIVE, SUPPORTED, VERDICTS
from gclab.analysis.verdict import POWER, WILCOXON_RESAMPLED_MAX, judge, seeds_for_power, tost_p, wilcoxon_two_sided

DOCS = Path(__file__).resolve().parents[2] / "docs" / "EXPERIMENTS.md"


def _one_sample(x: np.ndarray, delta: float, direction: int = 1):
    n = len(x)
    return judge(x.mean(), x.std(ddof=1) / math.sqrt(n), n - 1, delta=delta, direction=direction, n=n)


def test_tost_p_matches_statsmodels_ttost_mean():
    rng = np.random.default_rng(0)
    for shift in (0.0, 0.05, 0.2, -0.3):
        x = rng.normal(shift, 0.2, size=9)
        expected = DescrStatsW(x).ttost_mean(-0.15, 0.15)[0]
        se = x.std(ddof=1) / 3
        assert tost_p(x.mean(), se, 8, 0.15) == pytest.approx(expected, rel=1e-12)


def test_judge_gives_each_verdict_where_it_should():
    rng = np.random.default_rng(1)
    z = rng.standard_normal(12)
    z = (z - z.mean()) / z.std(ddof=1)  # mean 0, sd 1 exactly: the verdicts below do not depend on the draw
    assert _one_sample(1.0 + 0.1 * z, delta=0.2).verdict == SUPPORTED
    assert _one_sample(1.0 + 0.1 * z, delta=0.2, direction=-1).verdict == CONTRADICTED
    absent = _one_sample(0.01 + 0.1 * z, delta=0.2)
    assert absent.verdict == ABSENT and absent.p_tost < ALPHA and absent.p_value >= ALPHA
    wide = _one_sample(0.1 + 2.0 * z, delta=0.2)
    assert wide.verdict == INCONCLUSIVE and wide.seeds_needed > 12
    assert f"{wide.seeds_needed} seeds" in wide.text("mean")
    assert _one_sample(0.01 + 0.1 * z, delta=None).verdict == INCONCLUSIVE  # no δ: no equivalence test
    assert set(VERDICTS) >= {ABSENT}


def test_judge_p_value_is_the_two_sided_t_test():
    x = np.array([0.3, -0.1, 0.5, 0.2, 0.05, 0.4])
    expected = stats.ttest_1samp(x, 0.0).pvalue
    assert _one_sample(x, delta=0.1).p_value == pytest.approx(expected, rel=1e-12)


def _power(n: int, d: float) -> float:
    """Two-sided one-sample t-test power at standardized effect d with n seeds, from the noncentral t."""
    crit = stats.t.ppf(1 - ALPHA / 2, n - 1)
    nc = d * math.sqrt(n)
    return float(stats.nct.sf(crit, n - 1, nc) + stats.nct.cdf(-crit, n - 1, nc))


@pytest.mark.parametrize("d", [0.3, 0.8, 1.5])
def test_seeds_needed_is_the_smallest_n_with_80_percent_power(d):
    se, n_now = 0.5, 4  # one seed's sd = se·√n = 1, so δ = d is the standardized effect
    n = seeds_for_power(se, n_now, d)
    assert _power(n, d) >= POWER > _power(n - 1, d) or n == 2


def test_every_declared_delta_is_in_the_docs_table_with_the_same_value_and_family():
    rows = {}
    for line in DOCS.read_text().splitlines():
        m = re.match(r"\| `([\w:]+)` \| `([^`]+)` \| ([^|]+) \|", line)
        if m:
            expr = re.sub(r"ln ([\d.]+)", r"math.log(\1)", m.group(3).strip())
            rows[m.group(1)] = (m.group(2), eval(expr, {"math": math}))  # noqa: S307 — our own docs table
    assert set(rows) == set(DELTAS)
    for key, spec in DELTAS.items():
        assert rows[key][0] == spec.family and rows[key][1] == pytest.approx(spec.delta, rel=1e-12), key


def test_declared_scales_delta_to_the_rows_scale_and_names_the_missing_key():
    spec = declared("fig3:gc", over=4)
    assert spec["family"] == "gc:fig3" and spec["delta"] == pytest.approx(math.log(1.1) / 4)
    assert declared("fig5:ucurve", unit=2.0)["delta"] == pytest.approx(0.2)
    with pytest.raises(KeyError, match="deltas.py"):
        declared("fig9:nothing")


@pytest.mark.parametrize("shift", [0.0, 0.3, -0.3])
def test_wilcoxon_is_scipys_test_on_either_side_of_the_resampling_cap(shift):
    """Resampled up to WILCOXON_RESAMPLED_MAX differences, normal approximation above: both agree with
    scipy.stats.wilcoxon (Pratt's zeros, ties) and with each other where they meet."""
    rng = np.random.default_rng(7)
    for n in (60, WILCOXON_RESAMPLED_MAX, WILCOXON_RESAMPLED_MAX + 1):
        d = np.round(rng.normal(shift, 1.0, n), 1)  # rounding makes ties and zeros
        res = wilcoxon_two_sided(d)
        assert res is not None
        p, below = res
        ref = stats.wilcoxon(d, zero_method="pratt", method="approx")
        assert p == pytest.approx(ref.pvalue, abs=0.02 if n <= WILCOXON_RESAMPLED_MAX else 1e-12)
        if shift:
            assert below == (shift < 0)

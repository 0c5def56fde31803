"""Means over seeds with t-intervals (`analysis.seed_stats`) against scipy's one-sample t-test, per group."""

import math

import numpy as np
import polars as pl
from scipy import stats

from gclab.analysis.seed_stats import mean_ci, t_interval


def test_by_group_t_interval_equals_scipy_one_sample_t_test():
    rng = np.random.default_rng(3)
    groups = {1: rng.normal(2.0, 0.5, 2), 4: rng.normal(1.0, 0.1, 5), 16: rng.normal(3.0, 1.0, 3), 64: [7.5]}
    frame = pl.DataFrame(
        [{"width": w, "seed": i, "loss": float(v)} for w, vs in groups.items() for i, v in enumerate(vs)]
        + [{"width": 4, "seed": 9, "loss": None}]  # a run without the value: left out of the mean and the count
    )
    out = mean_ci(frame.sample(fraction=1.0, shuffle=True, seed=1), ["width"], ["loss"])
    assert out["width"].to_list() == [1, 4, 16, 64]
    for row in out.iter_rows(named=True):
        values = np.asarray(groups[row["width"]], dtype=np.float64)
        assert row["loss_n"] == len(values)
        assert math.isclose(row["loss_mean"], values.mean(), rel_tol=1e-12)
        if len(values) < 2:
            assert row["loss_sd"] is None and row["loss_lo"] is None and row["loss_hi"] is None
            continue
        ci = stats.ttest_1samp(values, 0.0).confidence_interval(0.95)
        assert math.isclose(row["loss_lo"], ci.low, rel_tol=1e-10)
        assert math.isclose(row["loss_hi"], ci.high, rel_tol=1e-10)


def test_t_interval_uses_the_exact_quantile_for_large_n():
    """No switch to 1.96 at some n: 250 values use t(0.975, 249)."""
    lo, hi = t_interval([0.0], [1.0], [250])
    half = stats.t.ppf(0.975, 249) / math.sqrt(250)
    assert math.isclose(hi[0], half, rel_tol=1e-12) and math.isclose(lo[0], -half, rel_tol=1e-12)
    assert abs(half - 1.96 / math.sqrt(250)) > 1e-4

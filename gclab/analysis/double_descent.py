"""Fig. 5 (left): test loss and GC double-descend in width, peaking at the interpolation threshold.

- `by_width`: per width, mean and 95% t-interval over seeds of test loss and GC, mean train error.
- interpolation threshold: the first width whose mean train error is ≤ 1/n_train.
- the peak: the interior width (not the smallest or largest) with the highest mean.
- the test (per statistic): S = min(peak mean − lowest mean left of it, peak mean − lowest mean
  right of it), divided by the pooled within-width sd (so between-width spread in a permuted
  sample does not drown it), with the peak and both minima re-chosen on every resample, so the
  selection is part of the statistic; p from a permutation test (scipy.stats.permutation_test)
  that reassigns widths to runs. Exact under a flat curve and conservative under monotone ones,
  where S is smaller than under a flat curve. One-sided Welch t-tests of the peak's seeds vs
  each side's minimum are reported alongside; they ignore the selection, so they are not the verdict.

Verdicts (`analysis.verdict`): the same permutation test of the mirrored statistic (an interior
dip below both sides, S on −y) is the test against the claim; the two one-sided p-values give a
two-sided p, and the smaller decides: a significant peak → supported, a significant dip →
contradicted, otherwise inconclusive (monotone curves included). A real double-descent curve
also dips before its peak; the verdict goes with the stronger of the two; fewer than 3 widths with 2 seeds →
insufficient data.
The peak location is Nakkiran et al.'s claim (`literature`): within one grid step of the
interpolation threshold → supported, further → contradicted; no significant peak to locate →
insufficient data.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy import stats

from gclab.analysis.deltas import declared
from gclab.analysis.result import ALPHA, CONTRADICTED, SUPPORTED, Analysis, claim, claims_frame, insufficient
from gclab.analysis.run_summary import with_runs
from gclab.analysis.seed_stats import t_interval
from gclab.analysis.verdict import decide, two_sided
from gclab.store.db import query

CLAIMS = {
    "test_loss": "test loss double-descends in width: an interior peak above both sides (Fig. 5 left)",
    "gc": "GC double-descends in width like the test loss (Fig. 5 left)",
}
LOCATION_CLAIM = "the test-loss peak lies at the interpolation threshold (within one grid step)"
PAPER = {"kind": "paper", "source": "GC paper §6, Fig. 5 left"}
LITERATURE = {"kind": "literature", "source": "Nakkiran et al. 2021 (deep double descent), cited in the GC paper §6"}
SPECS = {"test_loss": "fig5:test_loss_peak", "gc": "fig5:gc_peak"}  # `analysis.deltas` keys
GC_COLUMN = "gc_last"  # double descent is about the end of training (docs/EXPERIMENTS.md fig5)
METHOD = (
    "S = min(peak − min left, peak − min right) of width means with the interior peak re-selected per "
    "resample, over the pooled within-width sd; permutation test of widths over runs (1999 resamples), "
    "two-sided with the mirrored dip statistic; value = S (unstudentized)"
)

_FIG5 = f"sweep = 'fig5' AND width IS NOT NULL AND isfinite(test_loss) AND isfinite({GC_COLUMN})"
_POINTS_SQL = with_runs(
    f"SELECT run_id, width, seed, test_loss, {GC_COLUMN} AS gc FROM rs WHERE {_FIG5} ORDER BY run_id"
)
_BY_WIDTH_SQL = with_runs(f"""
SELECT width, count(*) AS n_seeds, avg(test_loss) AS test_loss_mean, stddev_samp(test_loss) AS test_loss_sd,
       avg({GC_COLUMN}) AS gc_mean, stddev_samp({GC_COLUMN}) AS gc_sd, avg(1 - train_acc) AS train_err_mean,
       avg(n_train) AS n_train
FROM rs WHERE {_FIG5} GROUP BY width ORDER BY width
""")


def by_width(con) -> pl.DataFrame:
    agg = query(con, _BY_WIDTH_SQL)
    bounds = {}
    for c in ("test_loss", "gc"):
        lo, hi = t_interval(agg[f"{c}_mean"], agg[f"{c}_sd"], agg["n_seeds"])
        bounds |= {f"{c}_lo": lo, f"{c}_hi": hi}
    return agg.with_columns(**bounds).select(
        "width",
        "n_seeds",
        "test_loss_mean",
        "test_loss_lo",
        "test_loss_hi",
        "gc_mean",
        "gc_lo",
        "gc_hi",
        "train_err_mean",
        "n_train",
    )


def _peak_parts(means: np.ndarray):
    """Per row of width means (…, W): interior peak index, left/right argmin, and S."""
    w = means.shape[-1]
    idx = np.arange(w)
    inner = np.where((idx > 0) & (idx < w - 1), means, -np.inf)
    peak = inner.argmax(-1)[..., None]
    left = np.where(idx < peak, means, np.inf)
    right = np.where(idx > peak, means, np.inf)
    top = np.take_along_axis(means, peak, -1)[..., 0]
    s = np.minimum(top - left.min(-1), top - right.min(-1))
    return peak[..., 0], left.argmin(-1), right.argmin(-1), s


def peak_test(width_index: np.ndarray, y: np.ndarray, n_widths: int, seed: int = 0) -> dict:
    """Permutation test of the interior peak; the statistic is S over the pooled within-width sd."""
    onehot = np.eye(n_widths)[width_index]  # runs × widths
    y = y - y.mean()  # S and the within-width sd are shift-free; centring keeps the sum identity below exact
    counts, dof = onehot.sum(0), len(y) - n_widths

    def studentized(values, axis=-1):  # scipy passes axis; values always carry runs on the last one
        means = values @ onehot / counts
        within = (values**2).sum(-1) - (means**2 * counts).sum(-1)  # Σ (y − ȳ_width)², without a runs-sized array
        return _peak_parts(means)[3] / np.sqrt(within / dof)

    peak, left, right, s = _peak_parts(y @ onehot / counts)
    peak, left, right = int(peak), int(left), int(right)
    res, dip = (
        stats.permutation_test(
            (sign * y,),
            studentized,
            permutation_type="pairings",
            vectorized=True,
            n_resamples=1999,
            alternative="greater",
            rng=np.random.default_rng(seed),
        )
        for sign in (1.0, -1.0)
    )
    p_two, agrees = two_sided(float(res.pvalue), float(dip.pvalue))
    welch = [
        stats.ttest_ind(y[width_index == peak], y[width_index == side], equal_var=False, alternative="greater").pvalue
        for side in (left, right)
    ]
    return {
        "peak": peak,
        "left_min": left,
        "right_min": right,
        "S": float(s),
        "S_studentized": float(res.statistic),
        "p_perm": float(res.pvalue),
        "p_dip": float(dip.pvalue),
        "p_two_sided": p_two,
        "agrees": agrees,
        "welch_p_left": float(welch[0]),
        "welch_p_right": float(welch[1]),
    }


def analyze(con) -> Analysis:
    pts = query(con, _POINTS_SQL)
    table = by_width(con)
    n_runs, n_seeds, widths = pts.height, pts["seed"].n_unique(), table["width"].to_list()
    tables = {"by_width": table, "peaks": pl.DataFrame()}
    if len(widths) < 3 or n_seeds < 2 or table["n_seeds"].min() < 2:
        why = (
            f"needs ≥ 3 widths with ≥ 2 seeds each; have {len(widths)} widths, "
            f"{table['n_seeds'].min() if table.height else 0} seeds at the sparsest"
        )
        rows = [
            insufficient(c, "fig5", METHOD, why, n_runs=n_runs, n_seeds=n_seeds, **PAPER, **declared(SPECS[k]))
            for k, c in CLAIMS.items()
        ]
        rows.append(
            insufficient(
                LOCATION_CLAIM,
                "fig5",
                "peak width vs interpolation threshold",
                why,
                n_runs=n_runs,
                n_seeds=n_seeds,
                **LITERATURE,
            )
        )
        return Analysis("double_descent", tables, claims_frame(rows))
    width_index = pts.select(pl.col("width").rank("dense").cast(pl.Int64) - 1).to_series().to_numpy()
    rows, peaks = [], []
    for col, text in CLAIMS.items():
        r = peak_test(width_index, pts[col].to_numpy(), len(widths))
        spec = declared(SPECS[col], unit=float(pts[col].mean()))  # δ: a fraction of the statistic's mean
        peaks.append(
            {
                "statistic": col,
                **r,
                "peak_width": widths[r["peak"]],
                "left_min_width": widths[r["left_min"]],
                "right_min_width": widths[r["right_min"]],
            }
        )
        stat = (
            f"{METHOD}; peak at width {widths[r['peak']]}, minima at {widths[r['left_min']]} and "
            f"{widths[r['right_min']]}; unselected one-sided Welch p = {r['welch_p_left']:.3g} (left), "
            f"{r['welch_p_right']:.3g} (right)"
        )
        rows.append(
            claim(
                text,
                "fig5",
                stat,
                decide(r["p_two_sided"], r["agrees"]),
                **PAPER,
                value=r["S"],
                p_value=r["p_two_sided"],
                n_runs=n_runs,
                n_seeds=n_seeds,
                **spec,
            )
        )
    # Interpolation threshold and where the test-loss peak sits relative to it.
    interp = table.filter(pl.col("train_err_mean") <= 1.0 / pl.col("n_train"))
    loss_peak = peaks[0]
    threshold = interp["width"][0] if interp.height else None
    for p in peaks:
        p["threshold_width"] = threshold
    tables["peaks"] = pl.DataFrame(peaks)
    loc_stat = (
        "grid steps from the interpolation threshold (first width with mean train error ≤ 1/n_train) "
        "to the test-loss peak"
    )
    if threshold is None:
        rows.append(
            insufficient(
                LOCATION_CLAIM,
                "fig5",
                loc_stat,
                "no width reaches zero train error",
                n_runs=n_runs,
                n_seeds=n_seeds,
                **LITERATURE,
            )
        )
    elif not (loss_peak["p_two_sided"] < ALPHA and loss_peak["agrees"]):
        rows.append(
            insufficient(
                LOCATION_CLAIM,
                "fig5",
                loc_stat,
                "no significant test-loss peak to locate",
                n_runs=n_runs,
                n_seeds=n_seeds,
                **LITERATURE,
            )
        )
    else:
        steps = loss_peak["peak"] - widths.index(threshold)
        rows.append(
            claim(
                LOCATION_CLAIM,
                "fig5",
                f"{loc_stat}: threshold at width {threshold}, peak at {loss_peak['peak_width']}",
                SUPPORTED if abs(steps) <= 1 else CONTRADICTED,
                **LITERATURE,
                value=steps,
                n_runs=n_runs,
                n_seeds=n_seeds,
            )
        )
    return Analysis("double_descent", tables, claims_frame(rows))

"""§5, Eq. 6–8: the batch-gradient decomposition and implicit gradient regularization (IGR).

- Eq. 6 is an identity, ||∇θ L_B||² = R_B + A_B + C_B, so it is checked over every logged step of
  every completed run: max relative error |g − (R+A+C)| / max(|g|, 1e-300). Logged in float64,
  anything above 1e-6 is a bug: the verdict is then `contradicted` and the offending
  (run_id, step) rows are listed in table "violations".
- R_B, A_B and C_B over training: table "terms", per run means over 20 equal step bins.
- IGR strength h/b: the igr sweep's GC (at best test accuracy) regressed on log(h/b), OLS of
  log GC with seed fixed effects (as in `trends`, same reasons); the paper expects GC to fall
  as h/b grows.

Verdicts: the identity row is a `check` (the engine computes A and C from R), supported with no
row above the tolerance, contradicted otherwise. The h/b row (`analysis.verdict`): two-sided
t-test of the slope; significantly negative → supported, positive → contradicted, otherwise
inconclusive; fewer than 2 seeds or 3 values of h/b → insufficient data.
"""
from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import statsmodels.api as sm

from analysis.result import ALPHA, CONTRADICTED, SUPPORTED, Analysis, claim, claims_frame, insufficient
from analysis.run_summary import with_runs
from analysis.verdict import decide
from store.db import query

TOLERANCE = 1e-6
IDENTITY_CLAIM = "Eq. 6 decomposition ||∇θ L_B||² = R_B + A_B + C_B holds at every logged step"
HB_CLAIM = "GC decreases as the IGR strength h/b (learning rate / batch size) increases"
N_BINS = 20
CHECK = {"kind": "check", "source": "seed 002 §5, Eq. 6"}
PAPER = {"kind": "paper", "source": "seed 002 §5, Eq. 7–8"}

_REL = ("abs(s.grad_norm_sq - (s.residual_term + s.label_alignment + s.batch_alignment)) "
        "/ greatest(abs(s.grad_norm_sq), 1e-300)")
_TERMS_OK = ("s.grad_norm_sq IS NOT NULL AND s.residual_term IS NOT NULL AND s.label_alignment IS NOT NULL "
             "AND s.batch_alignment IS NOT NULL")
_BASE = f"FROM steps s JOIN runs r ON s.run_id = r.run_id WHERE r.status = 'completed' AND {_TERMS_OK}"
_IDENTITY_SQL = f"""
SELECT count(*) AS n_rows, count(DISTINCT s.run_id) AS n_runs, count(DISTINCT r.seed) AS n_seeds,
       max({_REL}) AS max_rel_err, count(*) FILTER (WHERE NOT isfinite({_REL})) AS non_finite,
       count(*) FILTER (WHERE {_REL} > {TOLERANCE}) AS n_violations
{_BASE}
"""
_VIOLATIONS_SQL = f"""
SELECT s.run_id, r.sweep, s.step, s.grad_norm_sq, s.residual_term, s.label_alignment, s.batch_alignment,
       {_REL} AS rel_err
{_BASE} AND ({_REL} > {TOLERANCE} OR NOT isfinite({_REL}))
ORDER BY rel_err DESC NULLS FIRST LIMIT 100
"""
_TERMS_SQL = f"""
WITH s AS (
    SELECT s.*, r.sweep AS run_sweep, r.lr AS run_lr, r.batch_size AS run_b,
           max(s.step) OVER (PARTITION BY s.run_id) AS last_step
    {_BASE}
)
SELECT run_id, run_sweep AS sweep, run_lr AS lr, run_b AS batch_size,
       least(floor({N_BINS} * step / greatest(last_step + 1, 1)), {N_BINS - 1})::INTEGER AS bin,
       min(step) AS step, avg(residual_term) AS R_B, avg(label_alignment) AS A_B,
       avg(batch_alignment) AS C_B, avg(grad_norm_sq) AS grad_norm_sq
FROM s GROUP BY ALL ORDER BY run_id, bin
"""
_HB_SQL = with_runs("""
SELECT run_id, seed, lr, batch_size, lr / batch_size AS h_over_b, gc FROM rs
WHERE sweep = 'igr' AND gc > 0 AND lr > 0 AND batch_size > 0
""")


def identity_claim(counts: dict, violations: pl.DataFrame) -> dict:
    method = f"max relative error |g − (R+A+C)| / |g| over every logged step; supported if ≤ {TOLERANCE:g}"
    if not counts["n_rows"]:
        return insufficient(IDENTITY_CLAIM, "igr", method, "no logged steps with all four terms", **CHECK)
    bad = counts["n_violations"] + counts["non_finite"]
    worst = (f"; worst: run {violations['run_id'][0]} step {violations['step'][0]} "
             f"(rel. error {violations['rel_err'][0]:.3g})") if violations.height else ""
    stat = f"{method}; {bad} of {counts['n_rows']} rows exceed it{worst}"
    return claim(IDENTITY_CLAIM, "igr", stat, CONTRADICTED if bad else SUPPORTED, **CHECK, value=counts["max_rel_err"],
                 n_runs=counts["n_runs"], n_seeds=counts["n_seeds"])


def hb_trend(runs: pl.DataFrame) -> tuple[dict, dict]:
    """(claim row, fit summary) of log GC on log(h/b) with seed fixed effects."""
    method = ("OLS of log GC on log(h/b) with seed fixed effects; two-sided t-test of the slope (claim: < 0); "
              "value = slope (elasticity)")
    n_runs, n_seeds, n_levels = runs.height, runs["seed"].n_unique(), runs["h_over_b"].n_unique()
    dummies = runs.select(pl.col("seed").cast(pl.String)).to_dummies(drop_first=True)
    if n_seeds < 2 or n_levels < 3 or n_runs < dummies.width + 4:
        why = f"needs ≥ 2 seeds and ≥ 3 values of h/b; have {n_seeds} seeds, {n_levels} values, {n_runs} runs"
        return insufficient(HB_CLAIM, "igr", method, why, n_runs=n_runs, n_seeds=n_seeds, **PAPER), {}
    X = np.column_stack([np.ones(n_runs), np.log(runs["h_over_b"].to_numpy()), dummies.to_numpy().astype(float)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = sm.OLS(np.log(runs["gc"].to_numpy()), X).fit()
    slope, p2 = float(fit.params[1]), float(fit.pvalues[1])
    lo, hi = fit.conf_int(ALPHA)[1]
    if not np.isfinite([slope, p2]).all():
        return insufficient(HB_CLAIM, "igr", method, "degenerate fit", n_runs=n_runs, n_seeds=n_seeds, **PAPER), {}
    row = claim(HB_CLAIM, "igr", f"{method}; R² = {fit.rsquared:.3f}", decide(p2, slope < 0), **PAPER,
                value=slope, p_value=p2, ci=(lo, hi), n_runs=n_runs, n_seeds=n_seeds)
    return row, {"slope": slope, "slope_lo": float(lo), "slope_hi": float(hi), "p_two_sided": p2,
                 "r_squared": float(fit.rsquared), "n_runs": n_runs, "n_seeds": n_seeds}


def analyze(con) -> Analysis:
    counts = query(con, _IDENTITY_SQL).row(0, named=True)
    violations = query(con, _VIOLATIONS_SQL)
    runs = query(con, _HB_SQL)
    hb_row, hb_fit = hb_trend(runs)
    tables = {"violations": violations, "terms": query(con, _TERMS_SQL), "identity": pl.DataFrame([counts]),
              "h_over_b": runs, "h_over_b_fit": pl.DataFrame([hb_fit]) if hb_fit else pl.DataFrame()}
    return Analysis("igr", tables, claims_frame([identity_claim(counts, violations), hb_row]))

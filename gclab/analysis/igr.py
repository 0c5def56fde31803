"""§5, Eq. 6–8: the batch-gradient decomposition and implicit gradient regularization (IGR).

- Eq. 6 is an identity, ||∇θ L_B||² = R_B + A_B + C_B, so it is checked over every logged step of
  every completed run: max relative error |g − (R+A+C)| / max(|g|, 1e-300). Logged in float64,
  anything above 1e-6 is a bug: the verdict is then `contradicted` and the offending
  (run_id, step) rows are listed in table "violations".
- R_B, A_B and C_B over training: table "terms", per run means over 20 equal step bins.
- IGR strength h/b: the igr sweep's GC (at best test accuracy; runs at zero training error only,
  `analysis.run_summary.FITTED`) in one OLS, log GC = β_h log h + β_b log b + seed fixed
  effects (as in `trends`, same reasons). Separate terms, so the data can show the lr and
  batch-size effects with any signs:
  - lr row: β_h < 0 (higher lr, lower GC); batch row: β_b > 0 (larger batch, higher GC);
  - h/b row, the joint contrast c = (β_h − β_b)/2: the elasticity of GC along log(h/b) when h
    and b move oppositely; the paper expects c < 0;
  - the `condition` row "only h/b matters": the t-test of β_h + β_b = 0 (statsmodels t_test).
    It can only be contradicted (significant) or inconclusive: not rejecting is no evidence of
    equality.

Verdicts: the identity row is a `check` (the engine computes A and C from R), supported with no
row above the tolerance, contradicted otherwise. The others (`analysis.verdict`): two-sided
t-tests; significant in the claimed direction → supported, against → contradicted, otherwise
inconclusive; fewer than 2 seeds or 3 values of each of h and b → insufficient data.
"""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import statsmodels.api as sm

from gclab.analysis.curves import binned_curves, sweep_where
from gclab.analysis.deltas import declared
from gclab.analysis.result import (
    ALPHA,
    CONTRADICTED,
    INCONCLUSIVE,
    SUPPORTED,
    Analysis,
    claim,
    claims_frame,
    defer,
    insufficient,
)
from gclab.analysis.run_summary import EXCLUDED_SQL, FITTED, excluded_note, with_runs
from gclab.analysis.verdict import judge
from gclab.store.db import query

TOLERANCE = 1e-6
IDENTITY_CLAIM = "Eq. 6 decomposition ||∇θ L_B||² = R_B + A_B + C_B holds at every logged step"
HB_CLAIM = "GC decreases as the IGR strength h/b (learning rate / batch size) increases"
LR_CLAIM = "GC decreases as the learning rate h increases (batch size held in the fit)"
B_CLAIM = "GC increases with the batch size b (learning rate held in the fit)"
RATIO_CLAIM = "GC depends on learning rate and batch size only through h/b (β_h = −β_b)"
N_BINS = 20
COEFFICIENTS = ("beta_h", "beta_b", "contrast", "beta_sum")  # β_h, β_b, (β_h − β_b)/2, β_h + β_b
TERMS = ("residual_term", "label_alignment", "batch_alignment")  # the steps columns of R_B, A_B, C_B
CHECK = {"kind": "check", "source": "GC paper §5, Eq. 6"}
PAPER = {"kind": "paper", "source": "GC paper §5, Eq. 7–8"}
CONDITION = {"kind": "condition", "source": "GC paper §5, Eq. 8 (IGR strength h/b)"}

_REL = (
    "abs(s.grad_norm_sq - (s.residual_term + s.label_alignment + s.batch_alignment)) "
    "/ greatest(abs(s.grad_norm_sq), 1e-300)"
)
_TERMS_OK = (
    "s.grad_norm_sq IS NOT NULL AND s.residual_term IS NOT NULL AND s.label_alignment IS NOT NULL "
    "AND s.batch_alignment IS NOT NULL"
)
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
_HB_SQL = with_runs(f"""
SELECT run_id, seed, lr, batch_size, lr / batch_size AS h_over_b, gc FROM rs
WHERE sweep = 'igr' AND gc > 0 AND lr > 0 AND batch_size > 0 AND {FITTED}
""")


def identity_claim(counts: dict, violations: pl.DataFrame) -> dict:
    method = f"max relative error |g − (R+A+C)| / |g| over every logged step; supported if ≤ {TOLERANCE:g}"
    if not counts["n_rows"]:
        return insufficient(IDENTITY_CLAIM, "igr", method, "no logged steps with all four terms", **CHECK)
    bad = counts["n_violations"] + counts["non_finite"]
    worst = (
        (
            f"; worst: run {violations['run_id'][0]} step {violations['step'][0]} "
            f"(rel. error {violations['rel_err'][0]:.3g})"
        )
        if violations.height
        else ""
    )
    stat = f"{method}; {bad} of {counts['n_rows']} rows exceed it{worst}"
    return claim(
        IDENTITY_CLAIM,
        "igr",
        stat,
        CONTRADICTED if bad else SUPPORTED,
        **CHECK,
        value=counts["max_rel_err"],
        n_runs=counts["n_runs"],
        n_seeds=counts["n_seeds"],
    )


def _spec(kind: dict) -> dict:
    """Family and δ of a paper row (the elasticities share one δ, `analysis.deltas`); nothing for the others."""
    return declared("igr:elasticity") if kind["kind"] == "paper" else {}


def lr_batch_fit(runs: pl.DataFrame, note: str) -> tuple[list[dict], dict]:
    """(claim rows lr, batch, h/b, only-h/b; fit summary) of log GC on log h and log b with seed fixed effects."""
    method = (
        "OLS of log GC on log h and log b with seed fixed effects (one fit); two-sided t-test of {what}; "
        f"value = {{value}} (95% CI); {note}"
    )
    texts = [
        (LR_CLAIM, "β_h (claim: < 0)", "β_h", PAPER),
        (B_CLAIM, "β_b (claim: > 0)", "β_b", PAPER),
        (HB_CLAIM, "the contrast (β_h − β_b)/2 (claim: < 0)", "(β_h − β_b)/2", PAPER),
        (RATIO_CLAIM, "β_h + β_b = 0 (significant contradicts)", "β_h + β_b", CONDITION),
    ]
    keys = COEFFICIENTS
    n_runs, n_seeds = runs.height, runs["seed"].n_unique()
    n_h, n_b = runs["lr"].n_unique(), runs["batch_size"].n_unique()
    dummies = runs.select(pl.col("seed").cast(pl.String)).to_dummies(drop_first=True)
    if n_seeds < 2 or n_h < 3 or n_b < 3 or n_runs < dummies.width + 5:
        why = (
            f"needs ≥ 2 seeds and ≥ 3 values of each of h and b; have {n_seeds} seeds, {n_h} learning rates, "
            f"{n_b} batch sizes, {n_runs} runs"
        )
        return [
            insufficient(t, "igr", method.format(what=w, value=v), why, n_runs=n_runs, n_seeds=n_seeds, **k, **_spec(k))
            for t, w, v, k in texts
        ], {}
    X = np.column_stack(
        [
            np.ones(n_runs),
            np.log(runs["lr"].to_numpy()),
            np.log(runs["batch_size"].to_numpy()),
            dummies.to_numpy().astype(float),
        ]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = sm.OLS(np.log(runs["gc"].to_numpy()), X).fit()
    contrasts = [np.eye(X.shape[1])[1], np.eye(X.shape[1])[2]]
    contrasts += [(contrasts[0] - contrasts[1]) / 2, contrasts[0] + contrasts[1]]
    rows, summary = [], {"r_squared": float(fit.rsquared), "n_runs": n_runs, "n_seeds": n_seeds}
    for (text, what, value, kind), key, c, direction in zip(texts, keys, contrasts, (-1, +1, -1, 0)):
        t = fit.t_test(c[None, :])
        est, p = float(np.squeeze(t.effect)), float(np.squeeze(t.pvalue))
        lo, hi = (float(v) for v in np.squeeze(t.conf_int(alpha=ALPHA)))
        m = method.format(what=what, value=value)
        if not np.isfinite([est, p]).all():
            rows.append(
                insufficient(text, "igr", m, "degenerate fit", n_runs=n_runs, n_seeds=n_seeds, **kind, **_spec(kind))
            )
            continue
        spec, j = _spec(kind), None
        if direction:
            se, df = float(np.squeeze(t.sd)), float(t.df_denom)
            j = judge(est, se, df, delta=spec.get("delta"), direction=direction, n=n_seeds, p_value=p)
            verdict = j.verdict
        else:  # a "no effect" claim: only a significant effect decides (contradicted)
            verdict = CONTRADICTED if p < ALPHA else INCONCLUSIVE
        why = (
            j.text(value)
            if j
            else (
                f"{value} significantly ≠ 0"
                if verdict == CONTRADICTED
                else f"{value} not significantly ≠ 0 (absence of evidence, not equality)"
            )
        )
        rows.append(
            claim(
                text,
                "igr",
                f"{m}; R² = {fit.rsquared:.3f}; {why}",
                verdict,
                value=est,
                p_value=p,
                ci=(lo, hi),
                n_runs=n_runs,
                n_seeds=n_seeds,
                seeds_needed=j.seeds_needed if j else None,
                **kind,
                **spec,
            )
        )
        summary |= {key: est, f"{key}_lo": lo, f"{key}_hi": hi, f"{key}_p": p, f"{key}_verdict": verdict}
    return rows, summary


def analyze(con) -> Analysis:
    counts = query(con, _IDENTITY_SQL).row(0, named=True)
    violations = query(con, _VIOLATIONS_SQL)
    runs = query(con, _HB_SQL)
    excluded = query(con, EXCLUDED_SQL)
    rows, fit = lr_batch_fit(runs, f"runs at zero training error only: {excluded_note(excluded, 'igr')}")
    tables = {
        "violations": violations,
        "terms": query(con, _TERMS_SQL),
        "identity": pl.DataFrame([counts]),
        "h_over_b": runs,
        "lr_batch_fit": pl.DataFrame([fit]) if fit else pl.DataFrame(),
        # one row per coefficient with its CI and its claim row's verdict (the report's estimate chart)
        "coefficients": pl.DataFrame(
            [
                {
                    "term": k,
                    "estimate": fit[k],
                    "lo": fit[f"{k}_lo"],
                    "hi": fit[f"{k}_hi"],
                    "verdict": fit[f"{k}_verdict"],
                }
                for k in COEFFICIENTS
                if k in fit
            ],
            schema={
                "term": pl.String,
                "estimate": pl.Float64,
                "lo": pl.Float64,
                "hi": pl.Float64,
                "verdict": pl.String,
            },
        ),
        "excluded": excluded.filter(pl.col("sweep") == "igr"),
    }
    deferred = defer(con, {("terms_by_setting",): terms_by_setting})
    return Analysis("igr", tables, claims_frame([identity_claim(counts, violations), *rows]), deferred)


def terms_by_setting(con) -> dict[str, pl.DataFrame]:
    """R_B, A_B, C_B over training, mean over seeds per (lr, batch size) in step bins: what the report draws."""
    curves = binned_curves(
        con, "steps", {t: f"x.{t}" for t in TERMS}, runs_where=sweep_where("igr"), by=("lr", "batch_size"), points=60
    )
    return {"terms_by_setting": curves}

"""§5, Eq. 6–8: the batch-gradient decomposition and implicit gradient regularization (IGR).

- Eq. 6 is an identity, ||∇θ L_B||² = R_B + A_B + C_B, so it is checked over every logged step of
  every completed run of the shipped sweeps (`store.sweeps.SHIPPED_SWEEPS`; a user's own runs are
  not the engine's check): max relative error |g − (R+A+C)| / max(|g|, 1e-300). Logged in float64,
  anything above 1e-6 is a bug: the verdict is then `contradicted` and the offending
  (run_id, step) rows are listed in table "violations".
- R_B, A_B and C_B over training: table "terms", per run means over 20 equal step bins.
- IGR strength h/b: GC at the matched training loss (the stop eval, where every run has zero
  training error and loss ≤ `stop_at_train_loss`; fitted runs only, `analysis.run_summary.FITTED`;
  docs/EXPERIMENTS.md, measurement points) over `SWEEPS`, one lr × batch grid: Fig. 4's SGD lr and
  batch axes plus the igr sweep's four corners (same model, data and stop), in one OLS,
  log GC = β_h log h + β_b log b + seed fixed effects (as in `trends`, same reasons), with HC3
  standard errors: the two sweeps' runs sit at different noise (and the corners further off the
  plane), so one pooled variance is wrong (`analysis.seed_fixed_effects.hc3_cov`). Separate
  terms, so the data can show the lr and batch-size effects with any signs:
  - lr row: β_h < 0 (higher lr, lower GC); batch row: β_b > 0 (larger batch, higher GC);
  - h/b row, the joint contrast c = (β_h − β_b)/2: the elasticity of GC along log(h/b) when h
    and b move oppositely; the paper expects c < 0;
  - the `condition` row "only h/b matters": the t-test of β_h + β_b = 0 (statsmodels t_test).
    It can only be contradicted (significant) or inconclusive: not rejecting is no evidence of
    equality.
  - a `toolkit` robustness row: the h/b contrast with GC read at best smoothed test accuracy.
- §5 step 3 (`condition`): the implicit pressure lands on the gradient norms when A_B and C_B are
  small relative to R_B or positive. Per fitted run, the mean over its logged steps of
  (min(A_B, 0) + min(C_B, 0)) / R_B, the share of R_B's pressure the negative alignments cancel;
  a two-sided one-sample t-test over runs against `STEP3_BOUND` = −1/2 (above: supported).

Verdicts: the identity row is a `check` (the engine computes A and C from R), supported with no
row above the tolerance, contradicted otherwise. The others (`analysis.verdict`): two-sided
t-tests; significant in the claimed direction → supported, against → contradicted, otherwise
inconclusive; fewer than 2 seeds or 3 values of each of h and b → insufficient data.
"""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
from scipy import stats

from gclab.analysis.curves import binned_curves
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
from gclab.analysis.seed_fixed_effects import hc3_cov, seed_fixed_effects_ols
from gclab.analysis.verdict import judge
from gclab.experiments import reads
from gclab.store.db import query
from gclab.store.sweeps import SHIPPED_SWEEPS, sql_in

# The runs of the h/b fit and of §5 step 3: one lr × batch grid, fig4's two axes and the corners igr adds
# (docs/EXPERIMENTS.md, igr); their [base] sections are the same, so they are one design. Declared once, in
# the registry (`gclab.experiments`, igr's `reads`), which the report overview reads too.
SWEEPS = reads("igr")
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
_SHIPPED = f"{_BASE} AND {sql_in(SHIPPED_SWEEPS)}"  # the identity row reads the runner's sweeps only
_IDENTITY_SQL = f"""
SELECT count(*) AS n_rows, count(DISTINCT s.run_id) AS n_runs, count(DISTINCT r.seed) AS n_seeds,
       max({_REL}) AS max_rel_err, count(*) FILTER (WHERE NOT isfinite({_REL})) AS non_finite,
       count(*) FILTER (WHERE {_REL} > {TOLERANCE}) AS n_violations
{_SHIPPED}
"""
_VIOLATIONS_SQL = f"""
SELECT s.run_id, r.sweep, s.step, s.grad_norm_sq, s.residual_term, s.label_alignment, s.batch_alignment,
       {_REL} AS rel_err
{_SHIPPED} AND ({_REL} > {TOLERANCE} OR NOT isfinite({_REL}))
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
# GC at the matched training loss (`gc_last`, the stop eval; docs/EXPERIMENTS.md, measurement points)
# is the row's GC; `gc_best` (best smoothed test accuracy) feeds the robustness row.
_HB_SQL = with_runs(f"""
SELECT run_id, sweep, seed, lr, batch_size, lr / batch_size AS h_over_b, gc_last AS gc, gc AS gc_best FROM rs
WHERE {sql_in(SWEEPS, "sweep")} AND gc_last > 0 AND gc > 0 AND lr > 0 AND batch_size > 0 AND {FITTED}
ORDER BY run_id
""")
# §5 step 3: per fitted run, the mean over its logged steps of the share of R_B's pressure on the gradient
# norms that negative alignments cancel, (min(A_B, 0) + min(C_B, 0)) / R_B (steps with R_B > 0).
_STEP3_SQL = f"""
SELECT s.run_id, r.seed, avg((least(s.label_alignment, 0) + least(s.batch_alignment, 0)) / s.residual_term) AS cancel,
       count(*) AS n_steps
{_BASE} AND {sql_in(SWEEPS)} AND s.residual_term > 0
  AND r.run_id IN (SELECT run_id FROM runs WHERE {FITTED})
GROUP BY ALL ORDER BY s.run_id
"""
STEP3_BOUND = -0.5  # the alignments cancel less than half of R_B (docs/EXPERIMENTS.md, igr)
STEP3_CLAIM = (
    "§5 step 3: the label and batch gradient alignments A_B, C_B are small relative to R_B or positive "
    "(their negative parts cancel less than half of R_B over training)"
)
STEP3 = {"kind": "condition", "source": "GC paper §5, step 3 (Eq. 6–8)"}


def step3_claim(per_run: pl.DataFrame) -> dict:
    """The §5 step-3 condition: one-sample t-test over runs of each run's mean cancelled share against
    STEP3_BOUND (two-sided; above it supports the condition, below contradicts it)."""
    method = (
        "per run, the mean over logged steps of (min(A_B, 0) + min(C_B, 0)) / R_B; one-sample t-test over runs "
        f"of its mean against {STEP3_BOUND} (two-sided; claim: above); value = mean (95% CI)"
    )
    d = per_run["cancel"].drop_nulls().drop_nans().to_numpy() if per_run.height else np.array([])
    n_seeds = per_run["seed"].n_unique() if per_run.height else 0
    if d.size < 3 or np.ptp(d) == 0:
        why = f"needs ≥ 3 runs with logged R_B, A_B, C_B and some spread; have {d.size}"
        return insufficient(STEP3_CLAIM, "igr", method, why, n_runs=d.size, n_seeds=n_seeds, **STEP3)
    est, se, df = float(d.mean()), float(d.std(ddof=1) / np.sqrt(d.size)), d.size - 1
    j = judge(est - STEP3_BOUND, se, df, delta=None, direction=+1, n=d.size)
    lo, hi = (est + q * se for q in stats.t.ppf([ALPHA / 2, 1 - ALPHA / 2], df))
    return claim(
        STEP3_CLAIM,
        "igr",
        f"{method}; {j.text('mean share − bound')}",
        j.verdict,
        value=est,
        p_value=j.p_value,
        ci=(lo, hi),
        n_runs=d.size,
        n_seeds=n_seeds,
        **STEP3,
    )


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
        "OLS of log GC on log h and log b with seed fixed effects (one fit); two-sided t-test of {what} "
        "with HC3 standard errors; "
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
    if n_seeds < 2 or n_h < 3 or n_b < 3 or n_runs < n_seeds + 4:  # intercept, β_h, β_b, seed dummies, 2 df
        why = (
            f"needs ≥ 2 seeds and ≥ 3 values of each of h and b; have {n_seeds} seeds, {n_h} learning rates, "
            f"{n_b} batch sizes, {n_runs} runs"
        )
        return [
            insufficient(t, "igr", method.format(what=w, value=v), why, n_runs=n_runs, n_seeds=n_seeds, **k, **_spec(k))
            for t, w, v, k in texts
        ], {}
    X = np.column_stack([np.log(runs["lr"].to_numpy()), np.log(runs["batch_size"].to_numpy())])
    log_gc = np.log(runs["gc"].to_numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = seed_fixed_effects_ols(log_gc, X, runs["seed"])
        cov = hc3_cov(fit, runs["seed"])
    r_squared = 1.0 - fit.ssr / float(((log_gc - log_gc.mean()) ** 2).sum())  # the dummy regression's R²
    contrasts = [np.array([1.0, 0.0]), np.array([0.0, 1.0])]
    contrasts += [(contrasts[0] - contrasts[1]) / 2, contrasts[0] + contrasts[1]]
    rows, summary = [], {"r_squared": float(r_squared), "n_runs": n_runs, "n_seeds": n_seeds}
    for (text, what, value, kind), key, c, direction in zip(texts, keys, contrasts, (-1, +1, -1, 0)):
        t = fit.t_test(c[None, :], cov_p=cov)
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
                f"{m}; R² = {r_squared:.3f}; {why}",
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


def _robustness(row: dict) -> dict:
    """The h/b row refitted with GC at best smoothed test accuracy, as a `toolkit` row: does the verdict
    depend on where GC was read? (docs/EXPERIMENTS.md, measurement points)"""
    return claim(
        f"{row['claim']} — robustness: GC read at best smoothed test accuracy",
        "igr",
        row["statistic"],
        row["verdict"],
        kind="toolkit",
        source=f"{row['source']}; gclab robustness check of the measurement point",
        value=row["value"],
        p_value=row["p_value"],
        ci=(row["ci_low"], row["ci_high"]),
        n_runs=row["n_runs"],
        n_seeds=row["n_seeds"],
        delta=row["delta"],
    )


def analyze(con) -> Analysis:
    counts = query(con, _IDENTITY_SQL).row(0, named=True)
    violations = query(con, _VIOLATIONS_SQL)
    runs = query(con, _HB_SQL)
    excluded = query(con, EXCLUDED_SQL)
    fitted = "fitted runs only: " + "; ".join(f"{s}: {excluded_note(excluded, s)}" for s in SWEEPS)
    rows, fit = lr_batch_fit(runs, f"GC at the matched training loss; {fitted}")
    best = runs.with_columns(pl.col("gc_best").alias("gc"))
    robust, _ = lr_batch_fit(best, f"GC at best smoothed test accuracy; {fitted}")
    rows += [_robustness(r) for r in robust if r["claim"] == HB_CLAIM]
    rows.append(step3_claim(query(con, _STEP3_SQL)))
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
        "excluded": excluded.filter(pl.col("sweep").is_in(SWEEPS)),
    }
    deferred = defer(con, {("terms_by_setting",): terms_by_setting})
    return Analysis("igr", tables, claims_frame([identity_claim(counts, violations), *rows]), deferred)


def terms_by_setting(con) -> dict[str, pl.DataFrame]:
    """R_B, A_B, C_B over training, mean over seeds per (lr, batch size) in step bins: what the report draws."""
    curves = binned_curves(
        con, "steps", {t: f"x.{t}" for t in TERMS}, runs_where=sql_in(SWEEPS), by=("lr", "batch_size"), points=60
    )
    return {"terms_by_setting": curves}

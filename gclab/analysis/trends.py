"""Does GC move with each implicit/explicit regularizer's strength in the paper's direction?

One row per heuristic: L2, spectral, flatness, static label corruption and per-step label noise
(fig3); GC penalty (gcreg); lr and batch size (fig4 and its momentum/Adam variants), each on GC and
on test accuracy; depth at init (fig2, GC at step 0) and fig2's "outputs shrink toward 0".

Measurement points (docs/EXPERIMENTS.md): fig3 and gcreg read GC at best smoothed test accuracy
(the paper's §4 point), fig4* at the matched training loss where every run stopped
(`analysis.trend_claims.GC_POINT`);
each GC row has a `toolkit` robustness row reading the other point. Rows that hold by construction
(fig2 under the fan-in ReLU scheme, the GC penalty lowering GC) say so in their statistic.

fig2 rows come per family (init × activation) and pooled: every named scheme is the paper's (§3
the standard scheme `PAPER_FAMILY`; SM C.1 the others), so each is a `paper` row; torch's `default`
init and the pooled fit (family fixed effects) are `toolkit` rows, so a failing family is its own
row rather than averaged away. Replications across optimizers are not rows of one Holm family:
momentum and Adam are the paper's SM C.7 and C.8 figures, their own families (`analysis.deltas`).
fig3, fig4* and gcreg use only runs that reached their stop target (`analysis.run_summary.FITTED`);
each row counts the rest.

Method per row (see `seed_trend`): Spearman ρ (scipy) of the strength against the statistic,
and OLS of log GC on the strength's grid level (0, 1, 2, … over the sorted distinct strengths,
so geometric grids with a zero baseline are evenly spaced) with seed fixed effects. Why seed
fixed effects: the replicates of a configuration share a seed with every other configuration
(same data order and init), so seed is a block; with 3–5 seeds MixedLM would estimate the
between-seed variance from 3–5 numbers (boundary fits, convergence warnings) and cluster-robust
errors with 3–5 clusters are badly biased, whereas fixed effects absorb any per-seed offset
and keep exact t inference.

Verdicts (`analysis.verdict.judge`): the two-sided t-test of the slope; significant with the
paper's sign → supported, with the opposite sign → contradicted; paper rows whose TOST puts the
slope inside ±δ (`analysis.deltas`) → absent; otherwise inconclusive; fewer than 2 seeds, 3
strengths or enough runs for the fixed effects → insufficient data.
"""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
from scipy import stats

from gclab.analysis.deltas import declared
from gclab.analysis.result import ALPHA, Analysis, claim, claims_frame, defer, insufficient
from gclab.analysis.run_summary import EXCLUDED_SQL, FITTED, excluded_note, with_runs
from gclab.analysis.seed_fixed_effects import seed_fixed_effects_ols
from gclab.analysis.trend_claims import POOLED, Heuristic, fig2_heuristics, heuristics
from gclab.analysis.trend_figures import FIG3_REGS, FIGURE_TABLES, fig2_families
from gclab.analysis.verdict import judge
from gclab.store.db import query
from gclab.store.sweeps import INTERPOLATING_SWEEPS, TREND_SWEEPS, sql_in

# fig2's "outputs shrink toward 0": each run's mean |output| over its probe points at init, joined as `p`
ABS_OUTPUT_JOIN = """LEFT JOIN (
    SELECT run_id, avg(abs(output)) AS abs_output FROM probes WHERE step = 0 GROUP BY run_id
) p ON rs.run_id = p.run_id"""

_TREND_SQL = with_runs(f"""
SELECT rs.run_id, rs.sweep, rs.seed, rs.lr, rs.batch_size, rs.depth, rs.init, rs.activation,
       rs.l2, rs.spectral_reg, rs.flatness_reg, rs.label_noise, rs.step_label_noise, rs.gc_reg,
       rs.gc_last,
       rs.gc, rs.gc_first, rs.test_acc, p.abs_output
FROM rs {ABS_OUTPUT_JOIN}
WHERE {sql_in(TREND_SWEEPS, "rs.sweep")} AND {FITTED}
ORDER BY rs.run_id
""")


def _select(runs: pl.DataFrame, h: Heuristic) -> pl.DataFrame:
    """The runs of one heuristic: its sweep, the other regularizers at 0 (fig3), the other axis fixed (fig4)."""
    df = runs.filter(pl.col("sweep") == h.sweep)
    if h.sweep == "fig3":
        df = df.filter(*[pl.col(r).fill_null(0) == 0 for r in FIG3_REGS if r != h.x])
    if h.fixed and df.height:
        widest = (
            df.group_by(h.fixed)
            .agg(pl.col(h.x).n_unique().alias("k"))
            .sort(["k", h.fixed], descending=[True, False])
            .row(0, named=True)[h.fixed]
        )
        df = df.filter(pl.col(h.fixed) == widest)
    if h.family not in (None, POOLED):
        df = df.filter(pl.col("family") == h.family)
    family = pl.col("family") if h.sweep == "fig2" else pl.lit("")  # constant (no dummies) but when pooled
    return df.select(
        "run_id",
        "seed",
        pl.col(h.x).cast(pl.Float64).alias("x"),
        pl.col(h.y).cast(pl.Float64).alias("y"),
        family.alias("family"),
    )


def seed_trend(df: pl.DataFrame, *, direction: int, log: bool) -> dict:
    """Trend of y on x with seed (and `family`) fixed effects. `df`: x, y, seed, family columns.

    The seed intercepts are absorbed by demeaning within seed (`analysis.seed_fixed_effects`): the
    dummy-variable regression's slope and inference at O(n) cost however many seeds; the few family
    dummies stay explicit columns.

    Returns a dict with n_runs, n_seeds, n_levels, spearman_rho/p, slope (per grid level),
    slope_lo/hi (95% CI), p_two_sided, p_one_sided (paper direction), agrees (slope has the paper's
    sign), effect_ratio, and `reason` when the
    data cannot support the test (then the statistics are None).
    """
    y = pl.col("y").log() if log else pl.col("y")
    df = df.filter(
        pl.col("y").is_not_null() & pl.col("x").is_not_null() & (pl.col("y") > 0 if log else pl.lit(True))
    ).with_columns(y.alias("ly"))
    df = df.filter(pl.col("ly").is_finite()).with_columns(
        (pl.col("x").rank("dense") - 1).cast(pl.Float64).alias("level")
    )
    out = {"n_runs": df.height, "n_seeds": df["seed"].n_unique(), "n_levels": df["x"].n_unique()}
    families = df.select("family").to_dummies(drop_first=True) if df.height else pl.DataFrame()
    n_params = 2 + max(out["n_seeds"] - 1, 0) + families.width  # intercept, level, seed and family dummies
    if out["n_seeds"] < 2 or out["n_levels"] < 3 or df.height < n_params + 2:
        return out | {
            "reason": f"needs ≥ 2 seeds, ≥ 3 strengths and > {n_params + 1} runs; have "
            f"{out['n_seeds']} seeds, {out['n_levels']} strengths, {df.height} runs"
        }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho, rho_p = stats.spearmanr(df["x"].to_numpy(), df["ly"].to_numpy())
        exog = np.column_stack(
            [df["level"].to_numpy(), *(families[c].cast(pl.Float64).to_numpy() for c in families.columns)]
        )
        fit = seed_fixed_effects_ols(df["ly"].to_numpy(), exog, df["seed"])  # level is column 0
    slope, p2 = float(fit.params[0]), float(fit.pvalues[0])
    lo, hi = (float(v) for v in fit.conf_int(ALPHA)[0])
    if not all(np.isfinite([slope, p2, lo, hi])):
        return out | {"reason": "degenerate fit (constant statistic or collinear design)"}
    p1 = p2 / 2 if np.sign(slope) == direction else 1 - p2 / 2
    span = out["n_levels"] - 1
    return out | {
        "spearman_rho": float(rho),
        "spearman_p": float(rho_p),
        "slope": slope,
        "slope_lo": lo,
        "slope_hi": hi,
        "p_two_sided": p2,
        "p_one_sided": p1,
        "se": float(fit.bse[0]),
        "df": float(fit.df_resid),
        "agrees": bool(np.sign(slope) == direction),
        "effect_ratio": float(np.exp(slope * span)) if log else slope * span,
        "reason": None,
    }


def analyze(con) -> Analysis:
    runs = query(con, _TREND_SQL).with_columns(
        pl.concat_str([pl.col("init").fill_null(""), pl.col("activation").fill_null("")], separator="/").alias("family")
    )
    excluded = query(con, EXCLUDED_SQL)
    families = runs.filter(pl.col("sweep") == "fig2")["family"].unique().to_list()
    rows, claim_rows, points = [], [], []
    for h in heuristics() + fig2_heuristics(families):
        df = _select(runs, h)
        r = seed_trend(df, direction=h.direction, log=h.log)
        what = f"{'log ' if h.log else ''}{h.y} per grid step of {h.x}"
        method = (
            f"OLS of {'log ' if h.log else ''}{h.y} on the grid level of {h.x} with seed fixed effects"
            f"{' and init/activation fixed effects' if h.family == POOLED else ''}; two-sided t-test "
            f"of the slope, its sign against the paper's direction; value = slope (CI 95%)"
        )
        if h.sweep in INTERPOLATING_SWEEPS:
            method += f"; runs at zero training error only: {excluded_note(excluded, h.sweep)}"
        over = max(r["n_levels"] - 1, 1)
        spec = declared(h.spec or f"{h.sweep}:{h.y}", over=over) if h.kind == "paper" else {}
        if h.note:
            method += f"; {h.note}"
        if r["reason"]:
            claim_rows.append(
                insufficient(
                    h.claim,
                    h.sweep,
                    method,
                    r["reason"],
                    kind=h.kind,
                    source=h.source,
                    n_runs=r["n_runs"],
                    n_seeds=r["n_seeds"],
                    **spec,
                )
            )
            rows.append(
                {
                    "heuristic": h.name,
                    "experiment": h.sweep,
                    "x": h.x,
                    "y": h.y,
                    "direction": h.direction,
                    **{k: r[k] for k in ("n_runs", "n_seeds", "n_levels")},
                    "verdict": "insufficient data",
                }
            )
            continue
        j = judge(r["slope"], r["se"], r["df"], delta=spec.get("delta"), direction=h.direction, n=r["n_seeds"])
        verdict, why = j.verdict, j.text(what)
        stat = (
            f"{method}; Spearman ρ={r['spearman_rho']:.3f} (p={r['spearman_p']:.3g}); "
            f"{'ratio' if h.log else 'change'} over the grid {r['effect_ratio']:.3g}; {why}"
        )
        claim_rows.append(
            claim(
                h.claim,
                h.sweep,
                stat,
                verdict,
                kind=h.kind,
                source=h.source,
                value=r["slope"],
                p_value=r["p_two_sided"],
                ci=(r["slope_lo"], r["slope_hi"]),
                n_runs=r["n_runs"],
                n_seeds=r["n_seeds"],
                seeds_needed=j.seeds_needed,
                **spec,
            )
        )
        rows.append(
            {
                "heuristic": h.name,
                "experiment": h.sweep,
                "x": h.x,
                "y": h.y,
                "direction": h.direction,
                **{k: v for k, v in r.items() if k not in ("reason", "agrees", "se", "df")},
                "verdict": verdict,
            }
        )
        points.append(df.with_columns(pl.lit(h.name).alias("heuristic")))
    schema = {
        "heuristic": pl.String,
        "experiment": pl.String,
        "x": pl.String,
        "y": pl.String,
        "direction": pl.Int64,
        "n_runs": pl.Int64,
        "n_seeds": pl.Int64,
        "n_levels": pl.Int64,
        "spearman_rho": pl.Float64,
        "spearman_p": pl.Float64,
        "slope": pl.Float64,
        "slope_lo": pl.Float64,
        "slope_hi": pl.Float64,
        "p_two_sided": pl.Float64,
        "p_one_sided": pl.Float64,
        "effect_ratio": pl.Float64,
        "verdict": pl.String,
    }
    table = pl.DataFrame(rows, schema=schema)
    pts = (
        pl.concat(points)
        if points
        else pl.DataFrame(
            schema={
                "run_id": pl.String,
                "seed": pl.Int64,
                "x": pl.Float64,
                "y": pl.Float64,
                "family": pl.String,
                "heuristic": pl.String,
            }
        )
    )
    tables = {"trends": table, "points": pts, "excluded": excluded, "fig2_families": fig2_families(table)}
    return Analysis("trends", tables, claims_frame(claim_rows), defer(con, FIGURE_TABLES))

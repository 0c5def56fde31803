"""Theorem 5.1 (transfer theorem): the bound against gc_x per example, with y = x, log-log;
and its tightness gc_x / bound over training."""

from __future__ import annotations

import altair as alt
import polars as pl

from gclab.analysis import curves
from gclab.analysis.report.budget import drawn_config, per_run
from gclab.analysis.report.common import (
    PANEL_H,
    PANEL_W,
    Figure,
    Section,
    collect_note,
    config_tooltip,
    log_scale,
    run_config,
    with_config,
)
from gclab.analysis.theorem import SAMPLE

TITLE = "Theorem 5.1 — the transfer bound on GC"
RUNS = "r.status = 'completed'"
YT = "tightness gc_x / bound_tight (log)"
GCX = "gc_x = squared norm of the input gradient (log)"


def build(ctx) -> Section:
    sec = Section(
        id="theorem",
        title=TITLE,
        question="Is every example's input-gradient norm ‖∇ₓf(x)‖² (gc_x) below the bound "
        "‖∇_θf(x)‖² / Σ_l T_l(x)², and how tight is the bound during training?",
        claim_experiments=("thm51",),
    )
    counts = ctx.table("theorem", "counts").row(0, named=True)
    n, bad, n_runs = counts["n_rows"], counts["holds_false"], counts["n_runs"]
    if not n:
        sec.empty_note = collect_note("thm51")
        return sec
    pts = ctx.table("theorem", "last_eval_sample")
    # The sample is in hash order: its head is still a hash sample.
    sampled = pts.height >= SAMPLE or not per_run(pts.height)
    pts = pts.head(curves.ROW_BUDGET)
    if pts.height:
        config = drawn_config(run_config(ctx.con, f"{RUNS} AND r.run_id IN (SELECT run_id FROM theorem)"), pts)
        sec.figures.append(
            Figure(
                "theorem_bound",
                _bound_chart(pts, config),
                "One dot per (run, split, example) at each run's last evaluation"
                + (f" (a random sample of {pts.height})" if sampled else "")
                + ". The theorem holds when dots lie on or above the dashed y = x line. "
                "Left: the paper's bound (Eq. 10); right: the bound without the 1/√min(d,k) "
                "factor, which the `holds_tight` column checks. Log-log axes.",
            )
        )
    tight = ctx.table("theorem", "tightness_over_training")
    if tight.height:
        sec.figures.append(
            Figure(
                "theorem_tightness",
                _tightness_chart(tight),
                "Tightness gc_x / bound (1 = the bound is attained) over training: median across "
                "runs and examples, with the interquartile range shaded. Log-scaled y.",
            )
        )
    sec.caveats += [
        f"{bad} of {n} theorem rows ({n_runs} runs) violate gc_x ≤ bound (float tolerance)."
        if bad
        else f"All {n} theorem rows ({n_runs} runs) satisfy gc_x ≤ bound.",
        "The theorem is for MLPs: residual and convolutional nets have no theorem rows.",
        "Metrics in eval mode (BatchNorm uses running statistics).",
    ]
    return sec


def _bound_chart(pts: pl.DataFrame, config):
    scale, axis = log_scale(pts["gc_x"], pts["bound"], pts["bound_tight"], pad=1.5)
    lo, hi = scale.domain
    diag = pl.DataFrame({"v": [lo, hi]})
    panels = []
    for col, title in (("bound", "paper's bound (Eq. 10)"), ("bound_tight", "bound without the 1/sqrt(min(d,k))")):
        x = alt.X("gc_x:Q", title=GCX, scale=scale, axis=axis)
        y = alt.Y(f"{col}:Q", title=f"{title} (log)", scale=scale, axis=axis)
        dots = (
            with_config(alt.Chart(pts), config)
            .mark_point(size=14, opacity=0.45, filled=True)
            .encode(
                x=x,
                y=y,
                color=alt.Color("split:N", title="split"),
                shape=alt.Shape(
                    "holds:N", title="holds", scale=alt.Scale(domain=[True, False], range=["circle", "cross"])
                ),
                tooltip=config_tooltip(
                    alt.Tooltip("gc_x:Q", format=".4g"),
                    alt.Tooltip(f"{col}:Q", format=".4g"),
                    "split:N",
                    "example:Q",
                    "step:Q",
                    "holds:N",
                ),
            )
        )
        line = (
            alt.Chart(diag)
            .mark_line(strokeDash=[5, 4], color="black")
            .encode(
                x=alt.X("v:Q", scale=scale, axis=axis, title=GCX),
                y=alt.Y("v:Q", scale=scale, axis=axis, title=f"{title} (log)"),
            )
        )
        panels.append(alt.layer(dots, line).properties(width=PANEL_W, height=PANEL_W, title=f"{title} vs gc_x"))
    return alt.hconcat(*panels)


def _tightness_chart(tight: pl.DataFrame):
    tight = tight.filter(pl.col("q25") > 0)
    ys, ya = log_scale(tight["q25"], tight["q75"], [1.0])
    base = alt.Chart(tight).encode(x=alt.X("step:Q", title="optimizer step"), color=alt.Color("split:N", title="split"))
    band = base.mark_area(opacity=0.2).encode(y=alt.Y("q25:Q", title=YT, scale=ys, axis=ya), y2="q75:Q")
    line = base.mark_line().encode(
        y=alt.Y("median:Q", title=YT, scale=ys, axis=ya),
        tooltip=[
            "split:N",
            alt.Tooltip("step:Q", format=".0f"),
            alt.Tooltip("median:Q", format=".3g"),
            alt.Tooltip("q25:Q", title="25th pct", format=".3g"),
            alt.Tooltip("q75:Q", title="75th pct", format=".3g"),
            alt.Tooltip("n:Q", title="rows"),
        ],
    )
    one = alt.Chart(pl.DataFrame({"y": [1.0]})).mark_rule(strokeDash=[4, 3], color="gray").encode(y="y:Q")
    return alt.layer(band, line, one).properties(
        width=PANEL_W + 120, height=PANEL_H, title="Tightness of the bound over training"
    )

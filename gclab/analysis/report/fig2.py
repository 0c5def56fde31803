"""Fig. 2: networks at initialization — outputs along the hypercube diagonal, and GC at init
against depth per init scheme (log scale)."""

from __future__ import annotations

import altair as alt

from gclab.analysis.report.budget import aggregated_note, drawn_config, per_run, spread
from gclab.analysis.report.common import (
    PANEL_H,
    PANEL_W,
    Figure,
    Section,
    collect_note,
    config_tooltip,
    estimate_chart,
    log_scale,
    run_config,
    with_config,
)
from gclab.analysis.trend_figures import FIG2_RUNS

TITLE = "Fig. 2 — deeper networks start closer to the zero function"


def build(ctx) -> Section:
    sec = Section(
        id="fig2",
        title=TITLE,
        question="At initialization, do deeper networks compute functions closer to zero, with lower "
        "GC, whatever the init scheme and activation?",
        claim_experiments=("fig2",),
    )
    if not ctx.has("fig2"):
        sec.empty_note = collect_note("fig2")
        return sec
    diag = ctx.table("trends", "fig2_diagonal")
    if diag.height:
        sec.figures.append(
            Figure(
                "fig2_diagonal",
                _diagonal(diag),
                "Outputs at init along the line P₁ + (P₂ − P₁)x between opposite corners of "
                "[−1, 1]^d (x rescaled to [−1, 1]); mean and max over the output logits of one "
                "network per depth. Pick the init scheme, activation and seed in the menus.",
            )
        )
    gc = ctx.table("trends", "fig2_gc_runs")
    if gc.height:
        dots = per_run(gc.height)
        agg = ctx.table("trends", "fig2_gc_by_depth")
        sec.figures.append(
            Figure(
                "fig2_gc_depth",
                _gc_depth(gc, agg, drawn_config(run_config(ctx.con, FIG2_RUNS), gc))
                if dots
                else _gc_depth_spread(gc, agg),
                "GC at initialization on the training inputs against depth, per init scheme "
                "(colour) and activation (dash). Lines: mean over seeds with 95% t-intervals "
                "(error bars); "
                + ("dots: single runs." if dots else "wide bars: 10–90% of the runs.")
                + " Log-scaled y."
                + ("" if dots else aggregated_note(gc.height)),
            )
        )
    fam = ctx.table("trends", "fig2_families")
    if fam.height:
        sec.figures.append(
            Figure(
                "fig2_families",
                estimate_chart(
                    fam,
                    "family",
                    "slope",
                    "slope_lo",
                    "slope_hi",
                    x_title="slope per depth step (log scale)",
                    facet="claim",
                    title="Depth trend per init/activation family (the paper's scheme first, then pooled)",
                ),
                "The slope of log GC (left) and log |output| (right) per step of the depth grid, "
                "with seed fixed effects, "
                "one row per family (`analysis.trends`); negative = the paper's direction. Colour = verdict of that "
                "family's row: a family where the claim fails shows red, whatever the pooled fit says.",
            )
        )
    sec.caveats += [
        "Runs of this sweep take no optimizer step (`steps = 0`): every number is at initialization.",
        "GC ≤ 0 cannot be shown on a log axis; such runs are left out of the GC-vs-depth chart.",
    ]
    return sec


def _diagonal(diag):
    inits = sorted(diag["init"].unique().to_list())
    acts = sorted(diag["activation"].unique().to_list())
    init_p = alt.param(name="fig2_init", value=inits[0], bind=alt.binding_select(options=inits, name="init "))
    act_p = alt.param(name="fig2_act", value=acts[0], bind=alt.binding_select(options=acts, name="activation "))
    seeds = sorted(diag["seed"].unique().to_list())
    seed_p = alt.param(name="fig2_seed", value=seeds[0], bind=alt.binding_select(options=seeds, name="seed "))
    base = (
        alt.Chart(diag)
        .transform_filter((alt.datum.init == init_p) & (alt.datum.activation == act_p) & (alt.datum.seed == seed_p))
        .encode(
            x=alt.X("t:Q", title="position x along the diagonal"),
            color=alt.Color("depth:O", title="depth (hidden layers)", scale=alt.Scale(scheme="viridis")),
            tooltip=[
                "depth:Q",
                "init:N",
                "activation:N",
                alt.Tooltip("t:Q", format=".2f"),
                alt.Tooltip("mean_out:Q", title="mean output", format=".3g"),
                alt.Tooltip("max_out:Q", title="max output", format=".3g"),
                "seed:Q",
            ],
        )
    )
    mean = base.mark_line().encode(y=alt.Y("mean_out:Q", title="mean output over logits"))
    mx = base.mark_line().encode(y=alt.Y("max_out:Q", title="max output over logits"))
    return alt.hconcat(
        mean.properties(width=PANEL_W, height=PANEL_H, title="Mean output at init"),
        mx.properties(width=PANEL_W, height=PANEL_H, title="Max output at init"),
    ).add_params(init_p, act_p, seed_p)


PICK = "fig2_pick"
COLOR = alt.Color("init:N", title="init scheme (click)")
X = alt.X("depth:Q", title="depth (hidden layers)")
Y_TITLE = "GC at initialization (log)"


def _gc_depth(pos, agg, config):
    pick = alt.selection_point(fields=["init"], bind="legend", name=PICK)
    ys, ya = log_scale(agg["gc_lo"], agg["gc_hi"], pos["gc"])
    dots = with_config(alt.Chart(pos).mark_circle(size=18), config).encode(
        x=X,
        y=alt.Y("gc:Q", title=Y_TITLE, scale=ys, axis=ya),
        color=COLOR,
        opacity=alt.condition(pick, alt.value(0.45), alt.value(0.05)),
        tooltip=config_tooltip(alt.Tooltip("gc:Q", title="GC", format=".4g")),
    )
    return _with_means(dots, agg, pick, ys, ya)


def _gc_depth_spread(pos, agg):
    """Above the row budget: the 10–90% band of the runs per (init, activation, depth), no dots."""
    pick = alt.selection_point(fields=["init"], bind="legend", name=PICK)
    band = spread(pos, ["init", "activation", "depth"], ["gc"])
    ys, ya = log_scale(agg["gc_lo"], agg["gc_hi"], band["gc_q10"], band["gc_q90"])
    bars = (
        alt.Chart(band)
        .mark_rule(strokeWidth=6)
        .encode(
            x=X,
            y=alt.Y("gc_q10:Q", title=Y_TITLE, scale=ys, axis=ya),
            y2="gc_q90:Q",
            color=COLOR,
            detail="activation:N",
            opacity=alt.condition(pick, alt.value(0.3), alt.value(0.04)),
            tooltip=[
                "init:N",
                "activation:N",
                "depth:Q",
                alt.Tooltip("gc_q10:Q", title="10th pct of runs", format=".3g"),
                alt.Tooltip("gc_q90:Q", title="90th pct of runs", format=".3g"),
                alt.Tooltip("n:Q", title="runs"),
            ],
        )
    )
    return _with_means(bars, agg, pick, ys, ya)


def _with_means(runs_layer, agg, pick, ys, ya):
    x, color, y_title = X, COLOR, Y_TITLE
    lines = (
        alt.Chart(agg)
        .mark_line(point=True)
        .encode(
            x=x,
            y=alt.Y("gc_mean:Q", title=y_title, scale=ys, axis=ya),
            color=color,
            strokeDash=alt.StrokeDash("activation:N", title="activation"),
            opacity=alt.condition(pick, alt.value(1.0), alt.value(0.15)),
            tooltip=[
                "init:N",
                "activation:N",
                "depth:Q",
                alt.Tooltip("gc_mean:Q", title="mean GC", format=".3g"),
                alt.Tooltip("gc_lo:Q", title="95% CI low", format=".3g"),
                alt.Tooltip("gc_hi:Q", title="95% CI high", format=".3g"),
                alt.Tooltip("gc_n:Q", title="seeds"),
            ],
        )
    )
    bars = (
        alt.Chart(agg)
        .mark_errorbar()
        .encode(
            x=x,
            y=alt.Y("gc_lo:Q", title=y_title, scale=ys, axis=ya),
            y2="gc_hi:Q",
            color=color,
            opacity=alt.condition(pick, alt.value(0.8), alt.value(0.1)),
        )
    )
    return alt.layer(bars, runs_layer, lines.add_params(pick)).properties(
        width=PANEL_W + 120, height=PANEL_H + 40, title="GC at initialization vs depth"
    )

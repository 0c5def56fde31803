"""Fig. 3: explicit regularizers — GC and test accuracy against each regularizer's strength."""

from __future__ import annotations

from functools import partial

import altair as alt
import polars as pl

from gclab.analysis.report.budget import aggregated_note, drawn_config, per_run, spread
from gclab.analysis.report.common import Figure, Section, collect_note, config_tooltip, run_config, with_config
from gclab.analysis.run_summary import CONVENTIONS, LABELS
from gclab.analysis.trend_figures import REGULARIZERS

TITLE = "Fig. 3 — explicit regularization lowers GC"
TITLES = {
    "l2": "L2 penalty",
    "spectral_reg": "spectral penalty",
    "flatness_reg": "flatness penalty",
    "label_noise": "label-noise fraction",
    "step_label_noise": "per-step label-noise probability",
    "gc_reg": "GC (Jacobian) penalty",
}
# By name: a positional zip named step_label_noise's column "GC penalty" and dropped gc_reg's.
REGS = {r: TITLES[r] for r in REGULARIZERS}
W, H = 170, 150


def build(ctx) -> Section:
    sec = Section(
        id="fig3",
        title=TITLE,
        question="As the strength of L2, spectral, flatness or label-noise regularization (and an "
        "explicit GC penalty) grows, does the trained network's GC fall?",
        claim_experiments=("fig3", "gcreg"),
    )
    if not ctx.has("fig3", "gcreg"):
        sec.empty_note = collect_note("fig3")
        return sec
    runs = ctx.table("trends", "fig3_runs")
    if runs.is_empty():
        sec.empty_note = "No completed fig3/gcreg runs with test evaluations yet."
        return sec
    agg = ctx.table("trends", "fig3_by_strength")
    dots = per_run(runs.height)
    runs_layer = (
        partial(_runs_layer, runs, run_config(ctx.con, "r.sweep IN ('fig3', 'gcreg') AND r.status = 'completed'"))
        if dots
        else partial(_band_layer, spread(runs, ["regularizer", "strength"], ["gc", "test_acc"]))
    )
    present = [r for r in REGS if r in set(runs["regularizer"].to_list())]
    rows = []
    for metric, title, zero in (("gc", LABELS["gc"], True), ("test_acc", LABELS["test_acc"], False)):
        rows.append(
            alt.hconcat(
                *[
                    _panel(
                        agg.filter(pl.col("regularizer") == r),
                        runs_layer(r, metric, title, zero, i == 0),
                        r,
                        metric,
                        title,
                        zero,
                        first=(i == 0),
                    )
                    for i, r in enumerate(present)
                ]
            )
        )
    chart = alt.vconcat(*rows).properties(title="GC (top) and test accuracy (bottom) vs regularization strength")
    sec.figures.append(
        Figure(
            "fig3_regularizers",
            chart,
            "One column per regularizer; x is the strength (categorical, values as labelled, "
            "0 = unregularized baseline). Lines: mean over seeds with 95% t-intervals; "
            + ("dots: runs (hover for config)." if dots else "wide bars: 10–90% of the runs.")
            + " The GC penalty column comes from the `gcreg` sweep."
            + ("" if dots else aggregated_note(runs.height)),
        )
    )
    missing = [REGS[r] for r in REGS if r not in present]
    if missing:
        sec.caveats.append("No runs yet for: " + ", ".join(missing) + ".")
    sec.caveats += [
        f"{CONVENTIONS['gc']} (the paper's protocol); {CONVENTIONS['test_acc']}.",
        "The accuracy axis does not start at 0, to show differences of a few points; the GC axis does.",
    ]
    return sec


def _x(reg):
    return alt.X("strength:O", title=REGS[reg], sort="ascending", axis=alt.Axis(format="~g", labelAngle=-45))


def _panel(agg, runs_layer, reg, metric, title, zero, first):
    x = _x(reg)
    scale = alt.Scale(zero=zero)
    ytitle = title if first else None
    bars = (
        alt.Chart(agg)
        .mark_errorbar(color="#555")
        .encode(x=x, y=alt.Y(f"{metric}_lo:Q", title=ytitle, scale=scale), y2=f"{metric}_hi:Q")
    )
    line = (
        alt.Chart(agg)
        .mark_line(point=True, color="#2f6fb3")
        .encode(
            x=x,
            y=alt.Y(f"{metric}_mean:Q", title=ytitle, scale=scale),
            tooltip=[
                alt.Tooltip("strength:Q", format="~g"),
                alt.Tooltip(f"{metric}_mean:Q", title="mean", format=".4g"),
                alt.Tooltip(f"{metric}_lo:Q", title="95% CI low", format=".4g"),
                alt.Tooltip(f"{metric}_hi:Q", title="95% CI high", format=".4g"),
                alt.Tooltip(f"{metric}_n:Q", title="seeds"),
            ],
        )
    )
    return alt.layer(bars, runs_layer, line).properties(width=W, height=H)


def _runs_layer(runs, config, reg, metric, title, zero, first):
    """One dot per run of `reg`, its config joined for the tooltip (only the runs drawn here)."""
    runs = runs.filter(pl.col("regularizer") == reg)
    return (
        with_config(alt.Chart(runs), drawn_config(config, runs))
        .mark_circle(size=16, opacity=0.45, color="#e07b39")
        .encode(
            x=_x(reg),
            y=alt.Y(f"{metric}:Q", title=title if first else None, scale=alt.Scale(zero=zero)),
            tooltip=config_tooltip(
                alt.Tooltip(f"{metric}:Q", title=title, format=".4g"),
                alt.Tooltip("l2:Q", format="~g"),
                alt.Tooltip("spectral_reg:Q", format="~g"),
                alt.Tooltip("flatness_reg:Q", format="~g"),
                alt.Tooltip("label_noise:Q", format="~g"),
                alt.Tooltip("gc_reg:Q", format="~g"),
            ),
        )
    )


def _band_layer(band, reg, metric, title, zero, first):
    """Above the row budget: the 10–90% band of the runs of `reg` per strength, in place of the dots."""
    band = band.filter(pl.col("regularizer") == reg)
    return (
        alt.Chart(band)
        .mark_rule(strokeWidth=6, opacity=0.35, color="#e07b39")
        .encode(
            x=_x(reg),
            y=alt.Y(f"{metric}_q10:Q", title=title if first else None, scale=alt.Scale(zero=zero)),
            y2=f"{metric}_q90:Q",
            tooltip=[
                alt.Tooltip("strength:Q", format="~g"),
                alt.Tooltip(f"{metric}_q10:Q", title="10th pct of runs", format=".4g"),
                alt.Tooltip(f"{metric}_q90:Q", title="90th pct of runs", format=".4g"),
                alt.Tooltip("n:Q", title="runs"),
            ],
        )
    )

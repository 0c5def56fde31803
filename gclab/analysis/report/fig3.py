"""Fig. 3: explicit regularizers — GC and test accuracy against each regularizer's strength."""

from __future__ import annotations

import altair as alt
import polars as pl

from gclab.analysis.report.common import Figure, Section, collect_note, config_tooltip, run_config, with_config
from gclab.analysis.run_summary import CONVENTIONS, LABELS
from gclab.analysis.trend_figures import REGULARIZERS

TITLE = "Fig. 3 — explicit regularization lowers GC"
REGS = dict(
    zip(
        REGULARIZERS,
        ("L2 penalty", "spectral penalty", "flatness penalty", "label-noise fraction", "GC (Jacobian) penalty"),
    )
)
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
    config = run_config(ctx.con, "r.sweep IN ('fig3', 'gcreg') AND r.status = 'completed'")
    present = [r for r in REGS if r in set(runs["regularizer"].to_list())]
    rows = []
    for metric, title, zero in (("gc", LABELS["gc"], True), ("test_acc", LABELS["test_acc"], False)):
        rows.append(
            alt.hconcat(
                *[
                    _panel(
                        runs.filter(pl.col("regularizer") == r),
                        agg.filter(pl.col("regularizer") == r),
                        config,
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
            "0 = unregularized baseline). Lines: mean over seeds with 95% t-intervals; dots: runs "
            "(hover for config). The GC penalty column comes from the `gcreg` sweep.",
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


def _panel(runs, agg, config, reg, metric, title, zero, first):
    x = alt.X("strength:O", title=REGS[reg], sort="ascending", axis=alt.Axis(format="~g", labelAngle=-45))
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
    dots = (
        with_config(alt.Chart(runs), config)
        .mark_circle(size=16, opacity=0.45, color="#e07b39")
        .encode(
            x=x,
            y=alt.Y(f"{metric}:Q", title=ytitle, scale=scale),
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
    return alt.layer(bars, dots, line).properties(width=W, height=H)

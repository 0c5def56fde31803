"""Fig. 5: double descent — test loss and GC against width with CI bands, and test loss
against GC with the fitted degree-6 U-curve."""

from __future__ import annotations

import altair as alt
import polars as pl

from gclab.analysis.double_descent import GC_COLUMN
from gclab.analysis.report.budget import aggregated_note, drawn_config, per_run, spread
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
from gclab.analysis.run_summary import CONVENTIONS, LABELS

TITLE = "Fig. 5 — GC follows double descent; test loss is U-shaped in GC"
RUNS = "r.sweep = 'fig5'"
RUNS_COLOR = "#e07b39"
WIDTH_COLOR = alt.Color("width:Q", title="width", scale=alt.Scale(type="log", scheme="viridis"))


def build(ctx) -> Section:
    sec = Section(
        id="fig5",
        title=TITLE,
        question="As width grows through the interpolation threshold, do test loss and GC both "
        "double-descend, and is test loss a U-shaped function of GC?",
        claim_experiments=("fig5",),
    )
    if not ctx.has("fig5"):
        sec.empty_note = collect_note("fig5")
        return sec
    runs = ctx.table("ucurve", "points")
    if runs.is_empty():
        sec.empty_note = "No completed fig5 runs with test evaluations yet."
        return sec
    by_width = ctx.table("double_descent", "by_width")
    if per_run(runs.height):
        config = drawn_config(run_config(ctx.con, f"{RUNS} AND r.status = 'completed'"), runs)
        seeds = sorted(runs["seed"].unique().to_list())
        width = _width_chart(by_width, runs, _width_dots(runs, config, seeds), seeds)
        ucurve = _ucurve_chart(ctx.table("ucurve", "poly6"), runs, _ucurve_dots(runs, config))
        runs_are, note = "single runs as dots; pick a seed in the menu to trace it", ""
    else:
        width = _width_chart(by_width, runs, _width_band(spread(runs, ["width"], ["test_loss", "gc"])), None)
        ucurve = _ucurve_chart(ctx.table("ucurve", "poly6"), runs, _ucurve_means(by_width))
        runs_are, note = "the 10–90% band of the runs dashed", aggregated_note(runs.height)
    sec.figures.append(
        Figure(
            "fig5_width",
            width,
            f"Mean over seeds (line) with its 95% confidence band (shaded), {runs_are}. Log-scaled width." + note,
        )
    )
    sec.figures.append(
        Figure(
            "fig5_ucurve",
            ucurve,
            ("Each dot is a run" if not note else "Each dot is the mean over the runs of one width")
            + " (colour: width); the curve is a degree-6 polynomial least-squares "
            "fit of test loss on GC with its 95% confidence band, as in the paper." + note,
        )
    )
    sec.caveats += [
        "Band statistics from `analysis.double_descent`: t-intervals of the mean over seeds at each width.",
        f"{CONVENTIONS[GC_COLUMN]}; {CONVENTIONS['test_loss']}. Runs have label noise (15%), as in the paper's setup.",
        "A degree-6 fit follows noise between few widths; the verdict uses a formal U test instead.",
    ]
    return sec


def _width_chart(by_width: pl.DataFrame, runs: pl.DataFrame, runs_layer, seeds: list | None):
    """Mean and CI band per width, with `runs_layer(metric, x, ytitle)` for the runs; a seed menu
    when `seeds` are given (one dot per run)."""
    xs, xa = log_scale(runs["width"], pad=1.1, ticks=sorted(runs["width"].unique().to_list()))
    x = alt.X("width:Q", title="hidden width n (log)", scale=xs, axis=xa)
    panels = []
    for metric, ytitle in (("test_loss", LABELS["test_loss"]), ("gc", LABELS[GC_COLUMN])):
        band = (
            alt.Chart(by_width)
            .mark_area(opacity=0.25, color="#2f6fb3")
            .encode(x=x, y=alt.Y(f"{metric}_lo:Q", title=ytitle), y2=f"{metric}_hi:Q")
        )
        mean = (
            alt.Chart(by_width)
            .mark_line(point=True, color="#2f6fb3")
            .encode(
                x=x,
                y=alt.Y(f"{metric}_mean:Q", title=ytitle),
                tooltip=[
                    "width:Q",
                    alt.Tooltip(f"{metric}_mean:Q", title="mean", format=".4g"),
                    alt.Tooltip(f"{metric}_lo:Q", title="95% CI low", format=".4g"),
                    alt.Tooltip(f"{metric}_hi:Q", title="95% CI high", format=".4g"),
                ],
            )
        )
        legend = _band_legend("single runs" if seeds is not None else "10–90% of the runs")
        panels.append(
            alt.layer(band, mean, *runs_layer(metric, x, ytitle), legend).properties(
                width=PANEL_W, height=PANEL_H, title=("Test loss" if metric == "test_loss" else "GC") + " vs width"
            )
        )
    chart = alt.hconcat(*panels)
    if seeds is None:
        return chart
    seed_p = alt.param(
        name="fig5_seed",
        value=None,
        bind=alt.binding_select(options=[None] + seeds, labels=["all"] + [str(s) for s in seeds], name="seed "),
    )
    return chart.add_params(seed_p)


def _width_dots(runs: pl.DataFrame, config: pl.DataFrame, seeds: list):
    highlight = "fig5_seed === null || datum.seed === fig5_seed"

    def layers(metric, x, ytitle):
        # The picked seed's line only (unpicked: the first seed's, hidden; an empty layer has an infinite
        # extent), not one transparent line per seed, which the page and its figures would all draw.
        trace = (
            alt.Chart(runs)
            .transform_filter(f"datum.seed === (fig5_seed === null ? {seeds[0]!r} : fig5_seed)")
            .mark_line(color=RUNS_COLOR, strokeDash=[3, 2])
            .encode(
                x=x,
                y=alt.Y(f"{metric}:Q", title=ytitle),
                detail="seed:N",
                opacity=alt.condition("fig5_seed !== null", alt.value(0.9), alt.value(0)),
            )
        )
        dots = (
            with_config(alt.Chart(runs), config)
            .mark_circle(size=20, color=RUNS_COLOR)
            .encode(
                x=x,
                y=alt.Y(f"{metric}:Q", title=ytitle),
                opacity=alt.condition(highlight, alt.value(0.55), alt.value(0.06)),
                tooltip=config_tooltip(alt.Tooltip(f"{metric}:Q", title=ytitle, format=".4g")),
            )
        )
        return trace, dots

    return layers


def _width_band(band: pl.DataFrame):
    """Above the row budget: the 10–90% band of the runs per width, dashed edges, in place of the dots."""

    def layers(metric, x, ytitle):
        tip = [
            "width:Q",
            alt.Tooltip(f"{metric}_q10:Q", title="10th pct of runs", format=".4g"),
            alt.Tooltip(f"{metric}_q90:Q", title="90th pct of runs", format=".4g"),
            alt.Tooltip("n:Q", title="runs"),
        ]
        edge = alt.Chart(band).mark_line(color=RUNS_COLOR, strokeDash=[3, 2], point=True)
        return tuple(edge.encode(x=x, y=alt.Y(f"{metric}_{q}:Q", title=ytitle), tooltip=tip) for q in ("q10", "q90"))

    return layers


def _band_legend(runs_are: str):
    """A legend saying what the band and line are (Vega-Lite draws none for fixed colours)."""
    key = pl.DataFrame({"what": ["mean over seeds", "95% CI of the mean", runs_are]})
    return (
        alt.Chart(key)
        .mark_point(opacity=0)
        .encode(
            color=alt.Color(
                "what:N",
                title=None,
                scale=alt.Scale(domain=key["what"].to_list(), range=["#2f6fb3", "#a9c3e3", RUNS_COLOR]),
                legend=alt.Legend(orient="top", symbolType="square"),
            )
        )
    )


def _ucurve_dots(runs: pl.DataFrame, config: pl.DataFrame):
    return (
        with_config(alt.Chart(runs.filter(pl.col("gc").is_not_null())), config)
        .mark_circle(size=28, opacity=0.7)
        .encode(
            x=alt.X("gc:Q", title=LABELS[GC_COLUMN]),
            y=alt.Y("test_loss:Q", title=LABELS["test_loss"], scale=alt.Scale(zero=False)),
            color=WIDTH_COLOR,
            tooltip=config_tooltip(
                alt.Tooltip("gc:Q", title="GC", format=".4g"),
                alt.Tooltip("test_loss:Q", title="test loss", format=".4g"),
            ),
        )
    )


def _ucurve_means(by_width: pl.DataFrame):
    """Above the row budget: one dot per width at its mean GC and mean test loss (analysis.double_descent)."""
    return (
        alt.Chart(by_width.filter(pl.col("gc_mean").is_not_null()))
        .mark_circle(size=60, opacity=0.9)
        .encode(
            x=alt.X("gc_mean:Q", title=LABELS[GC_COLUMN]),
            y=alt.Y("test_loss_mean:Q", title=LABELS["test_loss"], scale=alt.Scale(zero=False)),
            color=WIDTH_COLOR,
            tooltip=[
                "width:Q",
                alt.Tooltip("gc_mean:Q", title="mean GC", format=".4g"),
                alt.Tooltip("test_loss_mean:Q", title="mean test loss", format=".4g"),
            ],
        )
    )


def _ucurve_chart(fit: pl.DataFrame, runs: pl.DataFrame, dots):
    layers = [dots]
    if fit.height:
        lo, hi = runs["test_loss"].min(), runs["test_loss"].max()
        span = (hi - lo) or 1.0
        # Clip the band to the data's range ± 50% so an exploding polynomial cannot squash the dots.
        fit = fit.with_columns([pl.col(c).clip(lo - 0.5 * span, hi + 0.5 * span) for c in ("fit", "lo", "hi")])
        band = (
            alt.Chart(fit)
            .mark_area(opacity=0.2, color="black")
            .encode(x="gc:Q", y=alt.Y("lo:Q", title=LABELS["test_loss"]), y2="hi:Q")
        )
        curve = (
            alt.Chart(fit)
            .mark_line(color="black")
            .encode(
                x="gc:Q",
                y=alt.Y("fit:Q", title=LABELS["test_loss"]),
                tooltip=[
                    alt.Tooltip("gc:Q", format=".3g"),
                    alt.Tooltip("fit:Q", title="fitted test loss", format=".4g"),
                ],
            )
        )
        layers = [band, dots, curve]
    return alt.layer(*layers).properties(
        width=PANEL_W + 80, height=PANEL_H + 40, title="Test loss vs GC, degree-6 polynomial fit with 95% band"
    )

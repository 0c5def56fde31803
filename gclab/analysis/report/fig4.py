"""Fig. 4: implicit gradient regularization — the lr sweep and the batch-size sweep (GC and
test accuracy), and their training curves, for SGD and (when collected) momentum and Adam."""

from __future__ import annotations

import altair as alt
import polars as pl

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
from gclab.store.sweeps import FIG4_SWEEPS, sql_in

TITLE = "Fig. 4 — larger learning rates and smaller batches lower GC"
SWEEPS = tuple(FIG4_SWEEPS)
AXIS = {"lr": ("learning rate h (log)", 10), "batch_size": ("batch size b (log₂)", 2)}


def build(ctx) -> Section:
    sec = Section(
        id="fig4",
        title=TITLE,
        question="Does training with a higher learning rate, or a smaller batch, end at lower GC and "
        "higher test accuracy (implicit gradient regularization)?",
        claim_experiments=SWEEPS,
    )
    if not ctx.has(*SWEEPS):
        sec.empty_note = collect_note("fig4")
        return sec
    config = run_config(ctx.con, f"{sql_in(SWEEPS)} AND r.status = 'completed'")  # cut to the runs drawn
    sweeps = [s for s in SWEEPS if ctx.has(s)]
    for var in ("lr", "batch_size"):
        runs = ctx.table("trends", f"fig4_{var}_runs")
        if runs.is_empty():
            continue
        dots = per_run(runs.height)
        by_setting = ctx.table("trends", f"fig4_{var}_by_setting")
        sec.figures.append(
            Figure(
                f"fig4_{'lr' if var == 'lr' else 'batch'}",
                _sweep_chart(runs, by_setting, config if dots else None, var, sweeps),
                f"{'Learning-rate' if var == 'lr' else 'Batch-size'} sweep at fixed "
                f"{'batch size' if var == 'lr' else 'learning rate'}: GC at best test accuracy "
                "(left) and final test accuracy (right). Lines: mean over seeds with 95% "
                f"t-intervals; {'dots: runs' if dots else 'wide bars: 10–90% of the runs'}. "
                "Click an optimizer in the legend to highlight it." + ("" if dots else aggregated_note(runs.height)),
            )
        )
    curves = [(var, ctx.table("trends", f"fig4_{var}_curves")) for var in ("lr", "batch_size")]
    curves = [(var, c) for var, c in curves if c.height]
    if curves:
        sec.figures.append(
            Figure(
                "fig4_curves",
                _curves_chart(curves, sweeps),
                "Training curves, mean over seeds per setting (pick the optimizer sweep in the "
                "menu): train-set GC and test accuracy at each evaluation.",
            )
        )
    diverged = ctx.table("trends", "fig4_not_completed")["n"][0]
    if diverged:
        sec.caveats.append(
            f"{diverged} run(s) diverged or failed (typically at the largest learning rates) and "
            "are left out; see the overview."
        )
    sec.caveats += [
        f"{CONVENTIONS['gc_matched']}; metrics in eval mode (BatchNorm uses running statistics).",
        "Accuracy axes do not start at 0; GC axes are log-scaled.",
    ]
    return sec


def _sweep_chart(summ: pl.DataFrame, agg: pl.DataFrame, config, var: str, sweeps: list[str]):
    """Mean and CI per setting; with `config` one dot per run, without (above the row budget) the
    10–90% band of the runs per setting."""
    title, base = AXIS[var]
    pick = alt.selection_point(fields=["sweep"], bind="legend", name=f"fig4_pick_{var}")
    xs, xa = log_scale(summ[var], ticks=sorted(summ[var].unique().to_list()))
    x = alt.X(f"{var}:Q", title=title, scale=xs, axis=xa)
    gs, ga = log_scale(agg["gc_lo"], agg["gc_hi"], summ["gc"])
    color = alt.Color("sweep:N", title="optimizer sweep (click)", scale=alt.Scale(domain=sweeps))
    panels = []
    for metric, ytitle, scale, axis in (
        ("gc", f"{LABELS['gc_matched']} (log)", gs, ga),
        ("test_acc", LABELS["test_acc"], alt.Scale(zero=False), alt.Axis()),
    ):
        op = alt.condition(pick, alt.value(1.0), alt.value(0.12))
        bars = (
            alt.Chart(agg)
            .mark_errorbar()
            .encode(
                x=x,
                y=alt.Y(f"{metric}_lo:Q", title=ytitle, scale=scale, axis=axis),
                y2=f"{metric}_hi:Q",
                color=color,
                opacity=op,
            )
        )
        line = (
            alt.Chart(agg)
            .mark_line(point=True)
            .encode(
                x=x,
                y=alt.Y(f"{metric}_mean:Q", title=ytitle, scale=scale, axis=axis),
                color=color,
                opacity=op,
                tooltip=[
                    "sweep:N",
                    alt.Tooltip(f"{var}:Q", format="~g"),
                    alt.Tooltip(f"{metric}_mean:Q", title="mean", format=".4g"),
                    alt.Tooltip(f"{metric}_lo:Q", title="95% CI low", format=".4g"),
                    alt.Tooltip(f"{metric}_hi:Q", title="95% CI high", format=".4g"),
                    alt.Tooltip(f"{metric}_n:Q", title="seeds"),
                ],
            )
        )
        drawn = summ.filter(pl.col(metric).is_not_null() & (pl.col(metric) > 0))
        y = {"title": ytitle, "scale": scale, "axis": axis}
        runs = (
            _dots(drawn, drawn_config(config, drawn), metric, x, y, color, pick)
            if config is not None
            else _band(spread(drawn, ["sweep", var], [metric]), var, metric, x, y, color, pick)
        )
        layer = alt.layer(bars, runs, line)
        if metric == "gc":
            layer = layer.add_params(pick)
        panels.append(layer.properties(width=PANEL_W, height=PANEL_H))
    label = "Learning-rate sweep" if var == "lr" else "Batch-size sweep"
    return alt.hconcat(*panels).properties(title=label)


def _dots(runs: pl.DataFrame, config: pl.DataFrame, metric: str, x, y: dict, color, pick):
    return (
        with_config(alt.Chart(runs), config)
        .mark_circle(size=14)
        .encode(
            x=x,
            y=alt.Y(f"{metric}:Q", **y),
            color=color,
            opacity=alt.condition(pick, alt.value(0.4), alt.value(0.05)),
            tooltip=config_tooltip(alt.Tooltip(f"{metric}:Q", title=y["title"], format=".4g")),
        )
    )


def _band(band: pl.DataFrame, var: str, metric: str, x, y: dict, color, pick):
    return (
        alt.Chart(band)
        .mark_rule(strokeWidth=6)
        .encode(
            x=x,
            y=alt.Y(f"{metric}_q10:Q", **y),
            y2=f"{metric}_q90:Q",
            color=color,
            opacity=alt.condition(pick, alt.value(0.3), alt.value(0.04)),
            tooltip=[
                "sweep:N",
                alt.Tooltip(f"{var}:Q", format="~g"),
                alt.Tooltip(f"{metric}_q10:Q", title="10th pct of runs", format=".4g"),
                alt.Tooltip(f"{metric}_q90:Q", title="90th pct of runs", format=".4g"),
                alt.Tooltip("n:Q", title="runs"),
            ],
        )
    )


def _curves_chart(curves: list[tuple[str, pl.DataFrame]], sweeps: list[str]):
    pick = alt.param(
        name="fig4_curve_sweep", value=sweeps[0], bind=alt.binding_select(options=sweeps, name="optimizer sweep ")
    )
    rows = []
    for var, df in curves:
        title, _ = AXIS[var]
        color = alt.Color(f"{var}:O", title=title.split(" (")[0], scale=alt.Scale(scheme="plasma"))
        base = (
            alt.Chart(df)
            .transform_filter(alt.datum.sweep == pick)
            .encode(
                x=alt.X("step:Q", title="optimizer step"),
                color=color,
                tooltip=[
                    "sweep:N",
                    alt.Tooltip(f"{var}:Q", format="~g"),
                    alt.Tooltip("step:Q", format=".0f"),
                    alt.Tooltip("gc:Q", title="GC (mean)", format=".4g"),
                    alt.Tooltip("test_acc:Q", title="test acc (mean)", format=".4f"),
                    alt.Tooltip("gc_n:Q", title="runs averaged"),
                ],
            )
        )
        gs, ga = log_scale(df["gc"])
        gc = (
            base.transform_filter("isValid(datum.gc) && datum.gc > 0")
            .mark_line()
            .encode(y=alt.Y("gc:Q", title="train GC (log)", scale=gs, axis=ga))
        )
        acc = (
            base.transform_filter("isValid(datum.test_acc)")
            .mark_line()
            .encode(y=alt.Y("test_acc:Q", title="test accuracy", scale=alt.Scale(zero=False)))
        )
        label = "lr sweep" if var == "lr" else "batch-size sweep"
        rows.append(
            alt.hconcat(
                gc.properties(width=PANEL_W, height=PANEL_H - 30, title=f"{label}: GC over training"),
                acc.properties(width=PANEL_W, height=PANEL_H - 30, title=f"{label}: test accuracy"),
            )
        )
    return alt.vconcat(*rows).add_params(pick).resolve_scale(color="independent")

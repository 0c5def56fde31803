"""Fig. 1: a wide MLP fitting 10 points on a parabola — the function at several steps, and
its arc length and GC over training."""

from __future__ import annotations

import altair as alt
import polars as pl

from gclab.analysis.fig1 import ARC_MARGIN, FIT_MSE
from gclab.analysis.report.common import PANEL_H, PANEL_W, Figure, Section, collect_note, esc, log_scale

TITLE = "Fig. 1 — the learned function stays short"


def build(ctx) -> Section:
    sec = Section(
        id="fig1",
        title=TITLE,
        question="As a wide ReLU network fits 10 points by gradient descent, does its function grow "
        "in complexity only as needed, keeping its arc length near the minimal interpolant's?",
        claim_experiments=("fig1",),
    )
    if not ctx.has("fig1"):
        sec.empty_note = collect_note("fig1")
        return sec
    curve = ctx.table("fig1", "function")
    points = ctx.table("fig1", "training_points")
    if curve.height:
        sec.figures.append(
            Figure(
                "fig1_function",
                _function_chart(curve, sorted(curve["seed"].unique().to_list()), points),
                "The network's output on [−1, 1] at several training steps (darker = later) for "
                "the seed picked in the menu; black dots are the training points and the dotted "
                "black line the minimal interpolant (piecewise linear through them).",
            )
        )
    over = ctx.table("fig1", "over_training")
    if over.height:
        sec.figures.append(
            Figure(
                "fig1_arclength_gc",
                _over_training(over, ctx.table("fig1", "reference_arcs")),
                "Arc length of the probe curve (left) and train-set GC (right, log scale) at each "
                "evaluation; one line per seed. Grey dashed: arc length of the zero function (2), "
                "where the network starts; black: the minimal interpolant's arc length.",
            )
        )
    arc = ctx.table("fig1", "arc")
    if arc.height:
        rows = "".join(
            f"<tr><td>{esc(r['run_id'])}</td><td class=num>{r['seed']}</td><td class=num>{r['step']}</td>"
            f"<td class=num>{r['train_mse']:.3g}</td><td class=num>{r['ratio']:.4f}</td>"
            f"<td>{'yes' if r['reached_fit'] else 'no (lowest MSE)'}</td></tr>"
            for r in arc.to_dicts()
        )
        sec.html_blocks.append(
            f"<h3>Arc length at zero training error</h3><p class=note>Per run, at its first evaluation with train "
            f"MSE ≤ {FIT_MSE:g} (`analysis.fig1`); the verdict is a TOST of the mean ratio within "
            f"[{1 - ARC_MARGIN:g}, {1 + ARC_MARGIN:g}] (docs/EXPERIMENTS.md).</p><table class=ranking><thead><tr>"
            "<th>run</th><th>seed</th><th>step</th><th>train MSE</th><th>arc / minimal interpolant's</th>"
            f"<th>reached train MSE ≤ {FIT_MSE:g}</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    sec.caveats += [
        "Arc length is summed over the stored probe grid (a piecewise-linear approximation of ∫√(1+f′²)).",
        "GC is measured on the 10 training points (`evals.split = 'train'`), in eval mode.",
    ]
    return sec


def _function_chart(curve: pl.DataFrame, seeds: list, pts: pl.DataFrame):
    pick = alt.param(name="fig1_seed", value=seeds[0], bind=alt.binding_select(options=seeds, name="seed "))
    lines = (
        alt.Chart(curve)
        .transform_filter(alt.datum.seed == pick)
        .mark_line(strokeWidth=1.6)
        .encode(
            x=alt.X("t:Q", title="input x", scale=alt.Scale(domain=[-1, 1])),
            y=alt.Y("output:Q", title="network output f(x)"),
            color=alt.Color(
                "step:O", title="training step", scale=alt.Scale(scheme={"name": "blues", "extent": [0.3, 1.0]})
            ),
            tooltip=[
                "seed:Q",
                "step:Q",
                alt.Tooltip("t:Q", title="x", format=".3f"),
                alt.Tooltip("output:Q", format=".4f"),
            ],
        )
    )
    layers = [lines]
    if pts.height:
        layers.append(
            alt.Chart(pts).mark_line(color="black", strokeDash=[2, 3], strokeWidth=1).encode(x="x:Q", y="y:Q")
        )
        layers.append(
            alt.Chart(pts)
            .mark_point(color="black", filled=True, size=45, opacity=1)
            .encode(x="x:Q", y="y:Q", tooltip=[alt.Tooltip("x:Q", format=".3f"), alt.Tooltip("y:Q", format=".3f")])
        )
    return (
        alt.layer(*layers)
        .add_params(pick)
        .properties(width=PANEL_W + 80, height=PANEL_H + 40, title="Function at several training steps")
    )


def _over_training(over: pl.DataFrame, references: pl.DataFrame):
    base = alt.Chart(over).encode(
        x=alt.X("step:Q", title="optimizer step"),
        color=alt.Color("seed:N", title="seed"),
        tooltip=[
            alt.Tooltip("run_id:N", title="run"),
            "seed:Q",
            "step:Q",
            alt.Tooltip("arc_length:Q", title="arc length", format=".4f"),
            alt.Tooltip("gc:Q", title="GC", format=".4g"),
        ],
    )
    dots = over["step"].n_unique() <= 30  # markers only while they stay readable
    arc = (
        base.transform_filter("isValid(datum.arc_length)")
        .mark_line(point=dots)
        .encode(y=alt.Y("arc_length:Q", title="arc length of f on [−1, 1]", scale=alt.Scale(zero=False)))
    )
    color = {"zero function": "gray", "minimal interpolant": "black"}
    refs = references.select(
        pl.col("arc_length").alias("y"), "label", pl.col("label").replace_strict(color).alias("color")
    )
    rules = alt.Chart(refs).mark_rule(strokeDash=[4, 3]).encode(y="y:Q", color=alt.Color("color:N", scale=None))
    labels = (
        alt.Chart(refs)
        .mark_text(align="left", dx=4, dy=-6, fontSize=10)
        .encode(y="y:Q", x=alt.value(0), text="label:N", color=alt.Color("color:N", scale=None))
    )
    layers = [arc, rules, labels]
    gs, ga = log_scale(over["gc"])
    gc = (
        base.transform_filter("isValid(datum.gc) && datum.gc > 0")
        .mark_line(point=dots)
        .encode(y=alt.Y("gc:Q", title="GC on the training points (log)", scale=gs, axis=ga))
    )
    return alt.hconcat(
        alt.layer(*layers).properties(width=PANEL_W, height=PANEL_H, title="Arc length over training"),
        gc.properties(width=PANEL_W, height=PANEL_H, title="GC over training"),
    )

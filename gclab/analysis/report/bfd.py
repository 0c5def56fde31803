"""Batch functional dimension over training on train and test inputs, against the computable full
functional dimension (random inputs) and the ceiling, per output (from `analysis.bfd`)."""

from __future__ import annotations

import altair as alt
import polars as pl

from gclab.analysis.report.common import PANEL_H, PANEL_W, Figure, Section, collect_note

TITLE = "Functional dimension — the network uses fewer directions on data"
SERIES_COLORS = {"train": "#2f6fb3", "test": "#e07b39", "full (random, plateau)": "#7a7a7a"}


def build(ctx) -> Section:
    sec = Section(
        id="bfd",
        title=TITLE,
        question="Does the batch functional dimension (rank of the batch Jacobian in parameters) fall "
        "during training on the training inputs, and stay below the computable full functional "
        "dimension, which itself stays near its ceiling P − #hidden?",
        claim_experiments=("bfd",),
    )
    if not ctx.has("bfd"):
        sec.empty_note = collect_note("bfd")
        return sec
    over, ffd = ctx.table("bfd", "over_training"), ctx.table("bfd", "ffd_frac_over_training")
    if over.is_empty():
        sec.empty_note = "The bfd runs have no functional-dimension rows (`fdim`) yet."
        return sec
    parts = [
        over.select(
            "dataset",
            "output",
            "step",
            pl.col("split").alias("series"),
            pl.col("bfd_frac_mean").alias("frac"),
            "n_runs",
        )
    ]
    if ffd.height:
        parts.append(
            ffd.with_columns(pl.lit("full (random, plateau)").alias("series")).select(
                "dataset", "output", "step", "series", "frac", "n_runs"
            )
        )
    df = pl.concat(parts, how="vertical_relaxed").sort("dataset", "output", "series", "step")
    color = alt.Color(
        "series:N", title="inputs", scale=alt.Scale(domain=list(SERIES_COLORS), range=list(SERIES_COLORS.values()))
    )
    chart = (
        alt.Chart(df)
        .mark_line(point=True)
        .encode(
            x=alt.X("step:Q", title="optimizer step"),
            y=alt.Y("frac:Q", title="rank / ceiling (bfd_max)", scale=alt.Scale(domain=[0, 1])),
            color=color,
            tooltip=[
                "dataset:N",
                "output:N",
                "series:N",
                alt.Tooltip("step:Q", format=".0f"),
                alt.Tooltip("frac:Q", title="mean rank / ceiling", format=".3f"),
                alt.Tooltip("n_runs:Q", title="runs"),
            ],
        )
        .properties(width=PANEL_W - 60, height=PANEL_H)
        .facet(row=alt.Row("output:N", title="outputs ranked"), column=alt.Column("dataset:N", title="dataset"))
        .properties(title="Functional dimension over training (mean over seeds)")
    )
    sec.figures.append(
        Figure(
            "bfd_over_training",
            chart,
            "BFD = rank of the Jacobian of the batch outputs (softmax or logits) in all parameters, "
            "on the training inputs and a test batch, and the computable full functional "
            "dimension = the rank at the largest nested random-input batch; each divided by its "
            "ceiling (P − #hidden ReLU units for logits; see docs/EXPERIMENTS.md). Means over "
            "seeds.",
        )
    )
    sec.caveats += [
        "The y axis spans the full possible range [0, 1] of rank / ceiling.",
        "Random inputs are Gaussian with the training set's mean and std; the nested batches share "
        "their first rows, so their rank can only grow with the batch.",
    ]
    return sec

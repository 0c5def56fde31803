"""Batch functional dimension over training on train, test and random inputs."""
from __future__ import annotations

import altair as alt
import polars as pl

from analysis.report.common import PANEL_H, PANEL_W, Figure, Section, add_ci, collect_note
from analysis.report.queries import binned_curves, sweep_where

TITLE = "Functional dimension — the network uses fewer directions on data"
SPLIT_COLORS = {"train": "#2f6fb3", "test": "#e07b39", "random": "#7a7a7a"}


def build(ctx) -> Section:
    sec = Section(id="bfd", title=TITLE,
                  question="Does the batch functional dimension (rank of the batch Jacobian in parameters) fall "
                           "during training, and stay lower on train and test inputs than on random inputs?",
                  claim_experiments=("bfd",))
    if not ctx.has("bfd"):
        sec.empty_note = collect_note("bfd")
        return sec
    parts = []
    for split in SPLIT_COLORS:
        c = binned_curves(ctx.con, "evals", {"bfd_frac": "x.bfd / nullif(x.bfd_max, 0)"},
                          where=f"x.split = '{split}' AND x.bfd IS NOT NULL",
                          runs_where=sweep_where("bfd"), by=("dataset",), points=100)
        if c.height:
            parts.append(c.with_columns(pl.lit(split).alias("split")))
    if not parts:
        sec.empty_note = "The bfd runs have no functional-dimension evaluations yet."
        return sec
    df = add_ci(pl.concat(parts), "bfd_frac", "bfd_frac", "bfd_frac_sd", "bfd_frac_n")
    df = df.with_columns(pl.coalesce("bfd_frac_lo", "bfd_frac"), pl.coalesce("bfd_frac_hi", "bfd_frac"))
    pick = alt.selection_point(fields=["split"], bind="legend", name="bfd_pick")
    color = alt.Color("split:N", title="inputs (click)",
                      scale=alt.Scale(domain=list(SPLIT_COLORS), range=list(SPLIT_COLORS.values())))
    y_title = "BFD / max possible BFD"
    base = alt.Chart().encode(x=alt.X("step:Q", title="optimizer step"), color=color)
    band = base.mark_area(opacity=0.2).encode(
        y=alt.Y("bfd_frac_lo:Q", title=y_title, scale=alt.Scale(domain=[0, 1])), y2="bfd_frac_hi:Q",
        opacity=alt.condition(pick, alt.value(0.2), alt.value(0.03)))
    line = base.mark_line().encode(
        y=alt.Y("bfd_frac:Q", title=y_title, scale=alt.Scale(domain=[0, 1])),
        opacity=alt.condition(pick, alt.value(1.0), alt.value(0.15)),
        tooltip=["dataset:N", "split:N", alt.Tooltip("step:Q", format=".0f"),
                 alt.Tooltip("bfd_frac:Q", title="mean BFD fraction", format=".3f"),
                 alt.Tooltip("bfd_frac_lo:Q", title="95% CI low", format=".3f"),
                 alt.Tooltip("bfd_frac_hi:Q", title="95% CI high", format=".3f"),
                 alt.Tooltip("bfd_frac_n:Q", title="runs")])
    chart = alt.layer(band, line.add_params(pick), data=df).properties(width=PANEL_W, height=PANEL_H).facet(
        column=alt.Column("dataset:N", title="dataset")).properties(
        title="Batch functional dimension over training (mean over seeds, 95% CI band)")
    sec.figures.append(Figure("bfd_over_training", chart,
                              "BFD = rank of the Jacobian of the batch outputs in the parameters, on a fixed batch "
                              "of each split, divided by its maximum min(b·k, #params). Lines: mean over seeds; "
                              "bands: 95% t-intervals. Click a split in the legend to highlight it."))
    sec.caveats += ["The y axis spans the full possible range [0, 1] of the normalized BFD.",
                    "`random` inputs are Gaussian with the training set's mean and std."]
    return sec

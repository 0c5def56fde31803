"""The forest plot of the paper rows: each row's effect in units of its smallest effect of interest.

Standardized effect = (value − reference) / δ, with its CI the same way (columns of the claims
table, `analysis.result`; δ and the reference are declared per row in `analysis.deltas`), so the
dashed lines at ±1 mark ±δ and the shaded band between them is "too small to matter". The colour
is the row's verdict: a reader sees at a glance what is supported, absent or undecided. The x axis
is symmetric-log, so effects of 50δ and of 0.5δ both stay readable.
"""

from __future__ import annotations

import altair as alt
import polars as pl

from gclab.analysis.report.common import PANEL_W, VERDICT_COLORS

ROW_H = 18  # px per claim row
LABEL_CHARS = 70


def standardized(claims: pl.DataFrame) -> pl.DataFrame:
    """Paper rows with a value and δ: label, family, verdict, std, std_lo, std_hi (CI null when the row has none)."""
    rows = claims.filter(
        (pl.col("kind") == "paper") & pl.col("delta").is_not_null() & pl.col("value").is_not_null()
    ).with_columns(pl.col("reference").fill_null(0.0))
    scale = lambda c: (pl.col(c) - pl.col("reference")) / pl.col("delta")  # noqa: E731
    label = pl.concat_str(
        [
            pl.col("family"),
            pl.lit(": "),
            pl.when(pl.col("claim").str.len_chars() > LABEL_CHARS)
            .then(pl.col("claim").str.slice(0, LABEL_CHARS - 1) + "…")
            .otherwise(pl.col("claim")),
        ]
    )
    return rows.select(
        label.alias("label"),
        "claim",
        "family",
        "verdict",
        "value",
        "delta",
        scale("value").alias("std"),
        scale("ci_low").alias("std_lo"),
        scale("ci_high").alias("std_hi"),
    )


def forest_chart(claims: pl.DataFrame):
    """The Altair forest plot, or None when no paper row has both a value and a δ."""
    df = standardized(claims)
    if df.is_empty():
        return None
    y = alt.Y("label:N", sort=None, title=None, axis=alt.Axis(labelLimit=520))
    x_scale = alt.Scale(type="symlog", constant=1)
    color = alt.Color(
        "verdict:N",
        scale=alt.Scale(domain=list(VERDICT_COLORS), range=list(VERDICT_COLORS.values())),
        legend=alt.Legend(title="verdict", orient="top"),
    )
    band = (
        alt.Chart(pl.DataFrame({"lo": [-1.0], "hi": [1.0]}))
        .mark_rect(opacity=0.12, color="#1565c0")
        .encode(x=alt.X("lo:Q", scale=x_scale), x2="hi:Q")
    )
    rules = (
        alt.Chart(pl.DataFrame({"at": [-1.0, 0.0, 1.0], "dash": [1, 0, 1]}))
        .mark_rule(color="#555")
        .encode(
            x=alt.X("at:Q", scale=x_scale),
            strokeDash=alt.condition("datum.dash == 1", alt.value([4, 3]), alt.value([1, 0])),
        )
    )
    ci = (
        alt.Chart(df.drop_nulls(["std_lo", "std_hi"]))
        .mark_rule(strokeWidth=2)
        .encode(x=alt.X("std_lo:Q", scale=x_scale), x2="std_hi:Q", y=y, color=color)
    )
    dots = (
        alt.Chart(df)
        .mark_circle(size=60, opacity=1)
        .encode(
            x=alt.X("std:Q", scale=x_scale, title="effect / δ (symmetric log; dashed lines at ±δ)"),
            y=y,
            color=color,
            tooltip=[
                "claim:N",
                "family:N",
                "verdict:N",
                alt.Tooltip("value:Q", format=".4g"),
                alt.Tooltip("delta:Q", title="δ", format=".3g"),
                alt.Tooltip("std:Q", title="effect / δ", format=".3g"),
                alt.Tooltip("std_lo:Q", title="CI low / δ", format=".3g"),
                alt.Tooltip("std_hi:Q", title="CI high / δ", format=".3g"),
            ],
        )
    )
    return alt.layer(band, rules, ci, dots).properties(
        width=PANEL_W + 120,
        height=ROW_H * df.height,
        title="Paper claims: effect in units of its smallest effect of interest δ, with 95% CI",
    )

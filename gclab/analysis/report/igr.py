"""Implicit gradient regularization (Eqs. 6–8): R_B, A_B and C_B over training."""

from __future__ import annotations

import altair as alt
import polars as pl

from gclab.analysis.igr import COEFFICIENTS, SWEEPS
from gclab.analysis.igr import TERMS as TERM_COLUMNS
from gclab.analysis.report.common import PANEL_H, Figure, Section, collect_note, estimate_chart

TITLE = "IGR — the three terms of the batch gradient norm"
TERMS = dict(
    zip(TERM_COLUMNS, ("R_B (residual term, Eq. 6)", "A_B (label alignment, Eq. 8)", "C_B (batch alignment, Eq. 7)"))
)


def build(ctx) -> Section:
    sec = Section(
        id="igr",
        title=TITLE,
        question="How do the residual term R_B, the label alignment A_B and the batch alignment C_B of "
        "‖∇_θL_B‖² evolve in training across learning rates and batch sizes?",
        claim_experiments=("igr",),
    )
    if not ctx.has(*SWEEPS):  # igr reads fig4's runs and its own corners (analysis.igr)
        sec.empty_note = collect_note("igr")
        return sec
    curves = ctx.table("igr", "terms_by_setting")
    if curves.is_empty():
        sec.empty_note = "No logged steps for the fig4 and igr sweeps yet."
        return sec
    long = pl.concat(
        [
            curves.select(
                "lr",
                "batch_size",
                "step",
                pl.lit(label).alias("term"),
                pl.col(t).alias("value"),
                pl.col(f"{t}_n").alias("n"),
            )
            for t, label in TERMS.items()
        ]
    )
    batches = sorted(long["batch_size"].unique().to_list())
    pick = alt.param(name="igr_batch", value=batches[0], bind=alt.binding_select(options=batches, name="batch size b "))
    chart = (
        alt.Chart(long)
        .transform_filter(alt.datum.batch_size == pick)
        .mark_line()
        .encode(
            x=alt.X("step:Q", title="optimizer step"),
            y=alt.Y("value:Q", title="term value (mean over seeds)"),
            color=alt.Color("lr:O", title="learning rate h", scale=alt.Scale(scheme="plasma")),
            tooltip=[
                "term:N",
                alt.Tooltip("lr:Q", format="~g"),
                "batch_size:Q",
                alt.Tooltip("step:Q", format=".0f"),
                alt.Tooltip("value:Q", format=".4g"),
                alt.Tooltip("n:Q", title="runs averaged"),
            ],
        )
        .properties(width=260, height=PANEL_H)
        .facet(column=alt.Column("term:N", title=None, sort=list(TERMS.values())))
        .resolve_scale(y="independent")
        .add_params(pick)
        .properties(title="R_B, A_B and C_B over training (pick the batch size in the menu)")
    )
    sec.figures.append(
        Figure(
            "igr_terms",
            chart,
            "‖∇_θL_B‖² = R_B + A_B + C_B (Eq. 6), logged per step and averaged over seeds within "
            "step bins; one line per learning rate at the chosen batch size. Each panel has its "
            "own y scale.",
        )
    )
    fit = _coefficients(ctx)
    if fit is not None:
        sec.figures.append(
            Figure(
                "igr_lr_batch",
                estimate_chart(
                    fit,
                    "term",
                    "estimate",
                    "lo",
                    "hi",
                    x_title="elasticity d log GC / d log(·)",
                    title="GC against learning rate and batch size: separate terms and the h/b contrast",
                ),
                "One OLS of log GC on log h and log b with seed fixed effects, runs at zero training error only "
                "(`analysis.igr`): β_h and β_b, the h/b contrast (β_h − β_b)/2 and β_h + β_b (0 if only h/b "
                "matters), with 95% CIs; colour = verdict of the row.",
            )
        )
    sec.caveats += [
        "A_B and C_B are alignments and can be negative; axes are linear.",
        "Terms are computed on the training batch before the update, without regularizers.",
    ]
    return sec


def _coefficients(ctx) -> pl.DataFrame | None:
    """`analysis.igr`'s lr/batch coefficients, labelled (None without a fit)."""
    coef = ctx.table("igr", "coefficients")
    if coef.is_empty():
        return None
    labels = dict(
        zip(COEFFICIENTS, ("β_h (learning rate)", "β_b (batch size)", "(β_h − β_b)/2 (h/b)", "β_h + β_b (only h/b?)"))
    )
    return coef.with_columns(pl.col("term").replace_strict(labels))

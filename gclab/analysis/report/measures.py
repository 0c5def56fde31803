"""Complexity measures ranked by how well they track generalization (from `analysis.measures`)."""

from __future__ import annotations

import math

import altair as alt
import polars as pl

from gclab.analysis.report.common import Figure, Section, esc

TITLE = "Complexity measures — which one tracks generalization?"
COLS = ("measure", "granulated_tau", "n_axes", "kendall_tau", "p_value", "n_runs")


def build(ctx) -> Section:
    sec = Section(
        id="measures",
        title=TITLE,
        question="Across all completed runs, how well does each complexity measure rank runs by their "
        "generalization gap, compared with GC?",
        claim_experiments=("measures",),
    )
    if not any(ctx.completed.values()):
        sec.empty_note = "No runs yet — collect with `make paper` (the ranking uses every sweep)."
        return sec
    ranking = ctx.table("measures", "ranking")
    # no run with both a measure and a gap: nothing to rank
    if ranking.is_empty() or (ranking["granulated_tau"].is_null().all() and ranking["kendall_tau"].is_null().all()):
        sec.empty_note = "No ranking available: `analysis.measures` found too few runs with train and test evaluations."
        return sec
    ranking = ranking.sort("granulated_tau", descending=True, nulls_last=True)
    sec.html_blocks.append(_table(ranking))
    order = ranking["measure"].to_list()
    long = pl.concat(
        [
            ranking.select("measure", pl.col(c).alias("tau"), pl.lit(label).alias("statistic"))
            for c, label in (("granulated_tau", "granulated Ψ (decides)"), ("kendall_tau", "pooled τ (shown)"))
        ]
    )
    bars = (
        alt.Chart(long)
        .mark_bar()
        .encode(
            x=alt.X("tau:Q", title="rank correlation with the generalization gap", scale=alt.Scale(domain=[-1, 1])),
            y=alt.Y("measure:N", title=None, sort=order),
            yOffset=alt.YOffset("statistic:N", sort=None),
            color=alt.Color("statistic:N", title=None, scale=alt.Scale(range=["#2f6fb3", "#b7c3d3"])),
            tooltip=["measure:N", "statistic:N", alt.Tooltip("tau:Q", format=".3f")],
        )
    )
    sec.figures.append(
        Figure(
            "measures_ranking",
            bars.properties(
                width=420, height=max(80, 40 * ranking.height), title="Rank correlation with generalization"
            ),
            "Granulated Kendall Ψ (Jiang et al., 2020: the mean over hyper-parameter axes of τ "
            "within groups where only that axis varies) and, beside it, the pooled τ over all "
            "runs; measures sorted by Ψ, which decides the verdict. Axis spans −1…1.",
        )
    )
    sec.caveats += [
        "The pooled τ treats runs of different sweeps and training stages as exchangeable; Ψ compares "
        "only runs that differ in one hyper-parameter.",
        "GC is read at each run's best test accuracy (as everywhere in this report); the other measures "
        "at the last evaluation on the training split. Runs of sweeps trained to zero training error "
        "enter only if they reached it.",
    ]
    return sec


def _fmt(v, digits=3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if isinstance(v, float):
        return f"{v:.2g}" if abs(v) < 1e-3 and v != 0 else f"{v:.{digits}f}"
    return esc(v)


def _table(df: pl.DataFrame) -> str:
    head = (
        "<tr><th>measure</th><th>granulated Ψ</th><th>axes</th><th>pooled Kendall τ</th><th>p (pooled)</th>"
        "<th>runs</th></tr>"
    )
    rows = "".join(
        f"<tr><td>{esc(r['measure'])}</td><td class=num>{_fmt(r['granulated_tau'])}</td>"
        f"<td class=num>{_fmt(r['n_axes'])}</td><td class=num>{_fmt(r['kendall_tau'])}</td>"
        f"<td class=num>{_fmt(r['p_value'])}</td>"
        f"<td class=num>{_fmt(r['n_runs'])}</td></tr>"
        for r in df.select(COLS).to_dicts()
    )
    return f'<table class="ranking"><thead>{head}</thead><tbody>{rows}</tbody></table>'

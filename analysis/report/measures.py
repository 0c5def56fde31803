"""Complexity measures ranked by how well they track generalization (from `analysis.measures`)."""
from __future__ import annotations

import math

import altair as alt
import polars as pl

from analysis.report.common import Figure, Section, esc

TITLE = "Complexity measures — which one tracks generalization?"
COLS = ("measure", "kendall_tau", "p_value", "granulated_tau", "n_runs")


def build(ctx) -> Section:
    sec = Section(id="measures", title=TITLE,
                  question="Across all completed runs, how well does each complexity measure rank runs by their "
                           "generalization gap, compared with GC?",
                  claim_experiments=("measures",))
    if not any(ctx.completed.values()):
        sec.empty_note = "No runs yet — collect with `make paper` (the ranking uses every sweep)."
        return sec
    ranking = ctx.table("measures", "ranking", COLS)
    if ranking is None:
        sec.empty_note = ("No ranking available: `analysis.measures` is missing, failed, or found too few runs "
                          "with train and test evaluations.")
        return sec
    ranking = ranking.sort("kendall_tau", descending=True, nulls_last=True)
    sec.html_blocks.append(_table(ranking))
    bars = alt.Chart(ranking).mark_bar().encode(
        x=alt.X("kendall_tau:Q", title="Kendall τ with the generalization gap", scale=alt.Scale(domain=[-1, 1])),
        y=alt.Y("measure:N", title=None, sort="-x"),
        color=alt.condition(alt.datum.measure == "gc", alt.value("#2f6fb3"), alt.value("#9aa5b5")),
        tooltip=["measure:N", alt.Tooltip("kendall_tau:Q", format=".3f"), alt.Tooltip("p_value:Q", format=".2g"),
                 alt.Tooltip("granulated_tau:Q", title="granulated τ", format=".3f"), "n_runs:Q"])
    sec.figures.append(Figure("measures_ranking", bars.properties(width=420, height=max(80, 26 * ranking.height),
                                                                  title="Rank correlation with generalization"),
                              "Kendall τ between each measure and the generalization gap over all completed runs "
                              "(axis spans the full range −1…1); GC is highlighted."))
    sec.caveats += ["Granulated τ averages the rank correlation within groups of runs that differ in one "
                    "hyperparameter (Jiang et al., 2020), removing confounding between sweeps.",
                    "Measures are read at each run's last evaluation on the training split."]
    return sec


def _fmt(v, digits=3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if isinstance(v, float):
        return f"{v:.2g}" if abs(v) < 1e-3 and v != 0 else f"{v:.{digits}f}"
    return esc(v)


def _table(df: pl.DataFrame) -> str:
    head = "<tr><th>measure</th><th>Kendall τ</th><th>p</th><th>granulated τ</th><th>runs</th></tr>"
    rows = "".join(f"<tr><td>{esc(r['measure'])}</td><td class=num>{_fmt(r['kendall_tau'])}</td>"
                   f"<td class=num>{_fmt(r['p_value'])}</td><td class=num>{_fmt(r['granulated_tau'])}</td>"
                   f"<td class=num>{_fmt(r['n_runs'])}</td></tr>" for r in df.select(COLS).to_dicts())
    return f'<table class="ranking"><thead>{head}</thead><tbody>{rows}</tbody></table>'

"""The claims verdict table (from `analysis.claims.claims_table`) as HTML, whole or per experiment."""

from __future__ import annotations

import math

import polars as pl

from gclab.analysis.claims import by_kind, combine, run_all, summary
from gclab.analysis.report.common import Figure, Section, esc
from gclab.analysis.report.forest import forest_chart
from gclab.analysis.result import ABSENT, CONTRADICTED, INCONCLUSIVE, INSUFFICIENT, KINDS, SUPPORTED

KIND_TITLES = {
    "paper": "Claims of the papers",
    "condition": "Conditions the paper assumes",
    "check": "Identity and implementation checks",
    "literature": "Other papers' claims",
    "toolkit": "Questions gclab adds",
}


def load_claims(ctx) -> pl.DataFrame:
    """Every analysis once (`analysis.claims.run_all`; a failing module is one error row), its claim rows
    by kind; the results go to the context so sections draw their tables without recomputing them."""
    results = run_all(ctx.con)
    ctx.set_analyses(results)
    return by_kind(combine(results))


# The CSS class of each verdict's badge.
VERDICT_CLASS = {
    SUPPORTED: "v-good",
    CONTRADICTED: "v-bad",
    ABSENT: "v-absent",
    INCONCLUSIVE: "v-meh",
    INSUFFICIENT: "v-meh",
}


def _num(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    if isinstance(x, (int,)) and not isinstance(x, bool):
        return str(x)
    if isinstance(x, float):
        if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
            return f"{x:.{digits - 1}e}"
        return f"{x:.{digits}g}"
    return esc(x)


def _p(x) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return "&lt; 1e-4" if x < 1e-4 else f"{x:.2g}"


def _delta(r: dict) -> str:
    """±δ around the value of no effect (when that is not 0)."""
    if r.get("delta") is None:
        return "—"
    ref = r.get("reference") or 0.0
    return f"{_num(ref)} ± {_num(r['delta'])}" if ref else f"± {_num(r['delta'])}"


def _seeds(r: dict) -> str:
    """Seeds for 80% power at δ: what an inconclusive row would need (`analysis.verdict.judge`)."""
    return _num(r.get("seeds_needed")) if r["verdict"] == INCONCLUSIVE else "—"


def claims_html(df: pl.DataFrame, *, compact: bool = False) -> str:
    """Table rows for claims. `compact` (next to a chart) drops the experiment column."""
    cols = ["claim", "value", "95% CI", "δ", "p", "p (Holm)", "runs / seeds", "seeds needed", "verdict"]
    if not compact:
        cols[1:1] = ["source", "experiment", "family", "statistic"]
    head = "".join(f"<th>{c}</th>" for c in cols)
    rows = []
    for r in df.to_dicts():
        ci = f"[{_num(r.get('ci_low'))}, {_num(r.get('ci_high'))}]" if r.get("ci_low") is not None else "—"
        if compact:  # the method text is long: one click away
            cells = [f"<td>{esc(r['claim'])}<details><summary>method</summary>{esc(r['statistic'])}</details></td>"]
        else:
            cells = [
                f"<td>{esc(r['claim'])}</td>",
                f"<td>{esc(r['source'])}</td>",
                f"<td>{esc(r['experiment'])}</td>",
                f"<td>{esc(r.get('family') or '—')}</td>",
                f'<td class="stat">{esc(r["statistic"])}</td>',
            ]
        cells += [
            f'<td class="num">{_num(r["value"])}</td>',
            f'<td class="num">{ci}</td>',
            f'<td class="num">{_delta(r)}</td>',
            f'<td class="num">{_p(r["p_value"])}</td>',
            f'<td class="num">{_p(r["p_adjusted"])}</td>',
            f'<td class="num">{_num(r["n_runs"])} / {_num(r["n_seeds"])}</td>',
            f'<td class="num">{_seeds(r)}</td>',
            f'<td><span class="verdict {VERDICT_CLASS[r["verdict"]]}">{esc(r["verdict"])}</span></td>',
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="claims"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def rows_for(df: pl.DataFrame, experiments: tuple[str, ...]) -> pl.DataFrame | None:
    if not experiments:
        return None
    sub = df.filter(pl.col("experiment").cast(pl.String).is_in(list(experiments)))
    return sub if sub.height else None


def verdict_aside(df: pl.DataFrame, experiments: tuple[str, ...]) -> str:
    """The verdict block shown beside an experiment's charts."""
    if not experiments:
        return ""
    sub = rows_for(df, experiments)
    if sub is not None:
        return "<h3>Claim verdicts</h3>" + claims_html(sub, compact=True)
    return (
        '<h3>Claim verdicts</h3><p class="note">No verdict rows for '
        + ", ".join(f"<code>{esc(e)}</code>" for e in experiments)
        + ".</p>"
    )


def build(ctx) -> Section:
    sec = Section(
        id="claims",
        title="Claims and verdicts",
        question="Which of the paper's claims does the data in this store support, and how strongly?",
    )
    df = ctx.claims
    if df.is_empty():
        sec.empty_note = "No claim can be tested yet: the store has no runs of the experiments behind them."
    else:
        sec.html_blocks.append(f'<p class="summary">{esc(summary(df))}.</p>')
        forest = forest_chart(df)
        if forest is not None:
            sec.figures.append(
                Figure(
                    "claims_forest",
                    forest,
                    "Every paper row with an estimate: (value − reference)/δ with its 95% CI (a TOST row: 90%), "
                    "δ the row's smallest effect of interest (docs/EXPERIMENTS.md); the shaded band is ±δ. "
                    "Colour: the verdict. The sign is the estimate's on the row's own scale (a claimed decrease "
                    "is supported to the left).",
                )
            )
        sec.html_blocks.append(_excluded_html(ctx))
        for kind in KINDS:
            part = df.filter(pl.col("kind") == kind)
            if part.height:
                sec.html_blocks.append(f'<h3 data-kind="{kind}">{esc(KIND_TITLES[kind])}</h3>' + claims_html(part))
        sec.caveats += [
            "Verdicts: supported = the test is significant in the claimed direction; contradicted = significant "
            "against it; absent = an equivalence test (TOST at α) puts the effect inside ±δ, the smallest effect "
            "of interest declared in docs/EXPERIMENTS.md; inconclusive = the test ran and found neither (absence "
            "of evidence, not evidence of absence; 'seeds needed' says how many seeds would give 80% power at δ "
            "with the variance observed); insufficient data = the test could not run, and the row says what is "
            "missing.",
            f"Multiplicity: Holm's correction within each family (one figure of one paper, column family) of the "
            f"{df.filter(pl.col('kind') == 'paper').height} paper rows (column p (Holm)); paper rows' verdicts use "
            "the adjusted p. Conditions, checks, other papers' claims and gclab's own questions are not corrected "
            "and not counted in the summary.",
            "Each verdict comes from `gclab claims`; statistics use completed runs only, and "
            "`n_seeds` counts independent replicates behind each test.",
        ]
    return sec


def _excluded_html(ctx) -> str:
    """Per sweep trained to zero training error: completed runs and those left out of its claims
    (`analysis.run_summary.FITTED`, counted by `analysis.trends`)."""
    ex = ctx.analysis("trends").tables.get("excluded")  # none when analysis.trends failed (its error row says why)
    if ex is None:
        return ""
    rows = "".join(
        f"<tr><td>{esc(r['sweep'])}</td><td class=num>{r['n_completed']}</td><td class=num>{r['n_excluded']}</td></tr>"
        for r in ex.to_dicts()
    )
    return (
        "<h3>Runs left out of the interpolating-model claims</h3><p class=note>These sweeps train every run to "
        "zero training error; a completed run that stopped at its step cap short of it enters no claim.</p>"
        "<table class=ranking><thead><tr><th>sweep</th><th>completed runs</th><th>excluded (did not reach "
        f"zero training error)</th></tr></thead><tbody>{rows}</tbody></table>"
    )

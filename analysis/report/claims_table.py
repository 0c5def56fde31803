"""The claims verdict table (from `analysis.claims.claims_table`) as HTML, whole or per experiment."""

from __future__ import annotations

import math
import sys

import polars as pl

from gclab.analysis.report.common import Section, esc
from gclab.analysis.result import CLAIM_COLUMNS, KINDS

COLUMNS = tuple(CLAIM_COLUMNS)
KIND_TITLES = {
    "paper": "Claims of the papers",
    "condition": "Conditions the paper assumes",
    "check": "Identity and implementation checks",
    "literature": "Other papers' claims",
    "toolkit": "Questions gclab adds",
}


def load_claims(ctx) -> tuple[pl.DataFrame | None, str | None]:
    """(table, None) or (None, why not). Never raises: the report goes on without verdicts.

    Runs every analysis once through `analysis.claims.run_all` when it exists, and hands the
    results to the context so sections reuse their tables instead of recomputing them.
    """
    import importlib.util

    if importlib.util.find_spec("gclab.analysis.claims") is None:
        return None, "The statistics module (`analysis.claims`) is not installed in this checkout."
    try:
        import gclab.analysis.claims as claims_mod

        if hasattr(claims_mod, "run_all"):
            results = claims_mod.run_all(ctx.con)
            ctx.set_analyses(results)
            df = claims_mod.by_kind(claims_mod.combine(results))
        else:
            df = claims_mod.claims_table(ctx.con)
    except Exception as exc:
        msg = f"`analysis.claims` failed: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        print(f"warning: {msg}", file=sys.stderr)
        return None, msg
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        return None, f"`analysis.claims.claims_table` lacks columns {missing}; verdicts not shown."
    return df.select(COLUMNS), None


def verdict_class(verdict) -> str:
    v = str(verdict or "").lower()
    if any(w in v for w in ("contradict", "refut", "fail", "violat", "reject")):
        return "v-bad"
    if any(w in v for w in ("support", "confirm", "holds", "pass", "reproduc")):
        return "v-good"
    return "v-meh"


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


def claims_html(df: pl.DataFrame, *, compact: bool = False) -> str:
    """Table rows for claims. `compact` (next to a chart) drops the experiment column."""
    cols = ["claim", "value", "95% CI", "p", "p (Holm)", "runs / seeds", "verdict"]
    if not compact:
        cols[1:1] = ["source", "experiment", "statistic"]
    head = "".join(f"<th>{c}</th>" for c in cols)
    rows = []
    for r in df.select([c for c in COLUMNS if c in df.columns]).to_dicts():
        ci = f"[{_num(r.get('ci_low'))}, {_num(r.get('ci_high'))}]" if r.get("ci_low") is not None else "—"
        if compact:  # the method text is long: one click away
            cells = [f"<td>{esc(r['claim'])}<details><summary>method</summary>{esc(r['statistic'])}</details></td>"]
        else:
            cells = [
                f"<td>{esc(r['claim'])}</td>",
                f"<td>{esc(r['source'])}</td>",
                f"<td>{esc(r['experiment'])}</td>",
                f'<td class="stat">{esc(r["statistic"])}</td>',
            ]
        cells += [
            f'<td class="num">{_num(r["value"])}</td>',
            f'<td class="num">{ci}</td>',
            f'<td class="num">{_p(r["p_value"])}</td>',
            f'<td class="num">{_p(r["p_adjusted"])}</td>',
            f'<td class="num">{_num(r["n_runs"])} / {_num(r["n_seeds"])}</td>',
            f'<td><span class="verdict {verdict_class(r["verdict"])}">{esc(r["verdict"])}</span></td>',
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="claims"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def rows_for(df: pl.DataFrame | None, experiments: tuple[str, ...]) -> pl.DataFrame | None:
    if df is None or not experiments:
        return None
    sub = df.filter(pl.col("experiment").cast(pl.String).is_in(list(experiments)))
    return sub if sub.height else None


def verdict_aside(df: pl.DataFrame | None, experiments: tuple[str, ...], why_missing: str | None) -> str:
    """The verdict block shown beside an experiment's charts."""
    if not experiments:
        return ""
    sub = rows_for(df, experiments)
    if sub is not None:
        return "<h3>Claim verdicts</h3>" + claims_html(sub, compact=True)
    if df is None:
        return f'<h3>Claim verdicts</h3><p class="note">{esc(why_missing or "No verdicts available.")}</p>'
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
    df, why = ctx.claims, ctx.claims_error
    if df is None:
        sec.empty_note = why or "No verdicts available."
    elif df.is_empty():
        sec.empty_note = "No claim can be tested yet: the store has no runs of the experiments behind them."
    else:
        from gclab.analysis.claims import summary

        sec.html_blocks.append(f'<p class="summary">{esc(summary(df))}.</p>')
        sec.html_blocks.append(_excluded_html(ctx))
        for kind in KINDS:
            part = df.filter(pl.col("kind") == kind)
            if part.height:
                sec.html_blocks.append(f'<h3 data-kind="{kind}">{esc(KIND_TITLES[kind])}</h3>' + claims_html(part))
        sec.caveats += [
            "Verdicts: supported = the test is significant in the claimed direction; contradicted = significant "
            "against it; inconclusive = the test ran and found neither (absence of evidence, not evidence of "
            "absence); insufficient data = the test could not run, and the row says what is missing.",
            f"Multiplicity: Holm's correction over the {df.filter(pl.col('kind') == 'paper').height} paper rows "
            "(column p (Holm)); paper rows' verdicts use the adjusted p. Conditions, checks, other papers' claims "
            "and gclab's own questions are not corrected and not counted in the summary.",
            "Each verdict comes from `python -m analysis claims`; statistics use completed runs only, and "
            "`n_seeds` counts independent replicates behind each test.",
        ]
    return sec


def _excluded_html(ctx) -> str:
    """Per sweep trained to zero training error: completed runs and those left out of its claims
    (`analysis.run_summary.FITTED`, counted by `analysis.trends`)."""
    ex = ctx.table("trends", "excluded", ("sweep", "n_completed", "n_excluded"))
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

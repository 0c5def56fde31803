"""The read side in one call each — the claims table, the report, read-only SQL — served as
`gclab.claims`, `gclab.render_report` and `gclab.query`. None of them loads torch (the store and the
analysis never import it; see docs/SCHEMA.md for the views they read)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # polars loads when a call runs, not when `gclab.query` is looked up
    import polars as pl


def claims(data: str | Path = "data") -> pl.DataFrame:
    """The claims table (one row per claim, verdicts, Holm-adjusted p) of the store at `data`, as polars."""
    from gclab.analysis.claims import by_kind, claims_table
    from gclab.store.db import connect

    with connect(data) as con:
        return by_kind(claims_table(con))


def render_report(data: str | Path = "data", out: str | Path = "reports", **options) -> Path:
    """Render `<out>/index.html` and `<out>/figures/` from the store at `data`; returns the page's path.
    `options` are those of gclab.analysis.report.build.render (strict, figures, progress)."""
    from gclab.analysis.report import render

    return render(data, out, **options)


def query(sql: str, data: str | Path = "data", *, max_rows: int = 10_000, **limits) -> pl.DataFrame:
    """One read-only SQL statement over the store's views (runs, steps, evals, …) as a polars frame.
    `limits` are the sandbox's bounds (timeout, memory_limit; gclab/store/readonly.py)."""
    from gclab.store.readonly import read_only_query

    return read_only_query(data, sql, max_rows=max_rows, **limits)

"""The paper's claims, one row each, with verdicts: every analysis module's claim rows, in order,
then Holm's correction within each declared family of `paper` rows (`analysis.verdict.holm`).

Never raises on a store that is empty or partly collected: each module returns `insufficient
data` rows then. A module that fails on unexpected data is reported as one `insufficient data`
row naming the error (so one bad sweep cannot hide every other verdict), not swallowed silently.

`run_all` reads one snapshot of the store: every store view the analyses read is copied once into a
temporary table of the same name (temporary tables shadow the views for unqualified names), so all
modules see the same runs even while collection writes, and the Parquet files are opened once, not
per query (≈ 20× faster on a 1,000-run store). The copies are dropped afterwards. The report holds
one snapshot for its whole render (analyses and charts), `gclab claims` the one of `run_all`.
"""

from __future__ import annotations

import importlib
from contextlib import contextmanager

import polars as pl

from gclab import experiments
from gclab.analysis.result import CLAIM_COLUMNS, KINDS, VERDICTS, Analysis, claims_frame, insufficient
from gclab.analysis.verdict import holm
from gclab.store.schema import SCHEMAS


def load_modules() -> dict:
    """Every experiment's analysis module (`gclab.experiments`), imported, by its last name, in catalog order."""
    return {dotted.rsplit(".", 1)[-1]: importlib.import_module(dotted) for dotted in experiments.analysis_modules()}


# The analyses `run_all` runs: derived from the experiments registry, never listed here.
MODULES = load_modules()


# Per-layer rows are read by no analysis: they stay views (and are never loaded).
SNAPSHOT_TABLES = tuple(t for t in SCHEMAS if t != "layers")


@contextmanager
def snapshot(con):
    """Copy each store view into a same-named temporary table for the duration (see module docstring)."""
    # Only views are copied: a caller's own materialized tables (or an earlier snapshot) are reused.
    views = {
        r[0]
        for r in con.sql(
            "SELECT view_name FROM duckdb_views() WHERE NOT internal AND NOT temporary AND schema_name = 'main'"
        ).fetchall()
    }
    present = {r[0] for r in con.sql("SELECT table_name FROM duckdb_tables() WHERE temporary").fetchall()}
    made = [t for t in SNAPSHOT_TABLES if t in views and t not in present]
    try:
        for table in made:
            con.sql(f"CREATE TEMP TABLE {table} AS SELECT * FROM main.{table}")
        yield con
    finally:
        for table in made:
            con.sql(f"DROP TABLE IF EXISTS temp.main.{table}")


def run_all(con) -> dict[str, Analysis]:
    """Every analysis on one snapshot of the store, by module name; a failing module becomes one error row."""
    out = {}
    with snapshot(con):
        for name, module in MODULES.items():
            try:
                out[name] = module.analyze(con)
            except Exception as exc:  # noqa: BLE001 — reported as a row, see module docstring
                row = insufficient(
                    f"{name} analysis",
                    name,
                    "analysis failed",
                    f"{type(exc).__name__}: {exc}",
                    kind="check",
                    source=getattr(module, "__name__", f"gclab.analysis.{name}"),
                )
                out[name] = Analysis(name, {}, claims_frame([row]))
    return out


def combine(results: dict[str, Analysis]) -> pl.DataFrame:
    """The claim rows of `run_all`'s results as one table, Holm-adjusted within the paper rows' families."""
    return holm(pl.concat([a.claims for a in results.values()], how="vertical").select(CLAIM_COLUMNS))


def claims_table(con) -> pl.DataFrame:
    """One row per claim with exactly CLAIM_COLUMNS (module order; see `by_kind` for display order)."""
    return combine(run_all(con))


def by_kind(table: pl.DataFrame) -> pl.DataFrame:
    """Rows grouped by kind in the order of KINDS (paper first), module order kept within a kind."""
    rank = pl.col("kind").replace_strict(list(KINDS), list(range(len(KINDS))), default=len(KINDS))
    return table.with_row_index("_i").sort(rank, "_i").drop("_i")


def summary(table: pl.DataFrame) -> str:
    """One line counting the verdicts of the paper rows only (the other kinds are not the paper's claims), in the
    order of VERDICTS: supported, contradicted, absent, inconclusive, insufficient data."""
    paper = table.filter(pl.col("kind") == "paper")
    counts = paper.group_by("verdict").len()
    parts = [f"{n} {v}" for v, n in sorted(counts.iter_rows(), key=lambda r: VERDICTS.index(r[0]))]
    return f"{paper.height} paper claims: " + (", ".join(parts) if parts else "none tested")

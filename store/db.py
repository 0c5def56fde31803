"""DuckDB over the run store: one view per table, a persistent `runs.duckdb`, read-only SQL.

Views read the Parquet globs with hive partitioning and `union_by_name` (old runs written
before a column was added still read). Only complete runs (those with `run.parquet`) are
visible. A file that is not valid Parquet is named in a warning and left out; nothing on
disk is ever modified or deleted here.
"""
from __future__ import annotations

import sys
from pathlib import Path

import duckdb
import polars as pl

from store.layout import has_parquet_footer, runs_root, table_glob
from store.schema import FILE_NAMES, MARKER_TABLE, SCHEMAS

DB_FILE = "runs.duckdb"
# Statement types an ad-hoc query may have. SELECT covers DESCRIBE, SHOW and SUMMARIZE.
READ_ONLY_TYPES = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
_DUCK_TYPES = {"string": "VARCHAR", "double": "DOUBLE", "int64": "BIGINT", "int32": "INTEGER", "bool": "BOOLEAN"}


class StoreError(Exception):
    """A problem with the store or a query, worded as one line that says what to do."""


def _empty_select(table: str) -> str:
    cols = ", ".join(f"CAST(NULL AS {_DUCK_TYPES[str(f.type)]}) AS {f.name}" for f in SCHEMAS[table])
    return f"SELECT {cols} WHERE false"


def _scan(source: str) -> str:
    return (f"read_parquet({source}, hive_partitioning = true, union_by_name = true, "
            f"hive_types_autocast = false)")


def find_bad_files(data_dir: str | Path) -> list[Path]:
    """Table files of complete runs that are not readable Parquet (truncated, overwritten...)."""
    bad = []
    for folder in runs_root(data_dir).glob("sweep=*/run_id=*"):
        if not (folder / FILE_NAMES[MARKER_TABLE]).exists():
            continue  # incomplete run: invisible anyway
        bad += [p for p in (folder / name for name in FILE_NAMES.values()) if p.exists() and not has_parquet_footer(p)]
    return sorted(bad)


def view_statements(data_dir: str | Path, bad: list[Path]) -> dict[str, str]:
    """CREATE VIEW statements: plain globs when every file is sound, explicit lists otherwise."""
    bad_set = {str(p.resolve()) for p in bad}
    root = runs_root(data_dir).resolve()
    out = {}
    for table, name in FILE_NAMES.items():
        files = [str(p) for p in sorted(root.glob(f"*/*/{name}"))]
        good = [f for f in files if f not in bad_set]
        if not good:
            body = _empty_select(table)
        else:
            source = repr(table_glob(data_dir, table)) if len(good) == len(files) else repr(good)
            body = f"SELECT * FROM {_scan(source)}"
            if table != MARKER_TABLE:
                # Files of incomplete runs are sound but must stay invisible.
                body += " WHERE run_id IN (SELECT run_id FROM runs)"
        out[table] = f"CREATE OR REPLACE VIEW {table} AS {body}"
    return out


def refresh(data_dir: str | Path, *, warn=True) -> tuple[list[Path], dict[str, str]]:
    """Rewrite the views in `data/runs.duckdb` so any DuckDB client can attach it."""
    data_dir = Path(data_dir)
    if data_dir.exists() and not data_dir.is_dir():
        raise StoreError(f"--data {data_dir} is a file; point --data at the store folder (default ./data)")
    bad = find_bad_files(data_dir)
    if warn:
        for p in bad:
            print(f"warning: skipping {p}: not a valid Parquet file (truncated or corrupt); "
                  f"delete its run folder and re-run `make collect` to restore it", file=sys.stderr)
    views = view_statements(data_dir, bad)
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        with duckdb.connect(str(data_dir / DB_FILE)) as con:
            for sql in views.values():
                con.sql(sql)
    except duckdb.Error:
        pass  # another process holds the file; callers fall back to in-memory views
    return bad, views


def connect(data_dir: str | Path, *, warn=True) -> duckdb.DuckDBPyConnection:
    """A connection with one view per table. Read-only on the persistent file when it can be had."""
    _, views = refresh(data_dir, warn=warn)
    try:
        return duckdb.connect(str(Path(data_dir) / DB_FILE), read_only=True)
    except duckdb.Error:
        con = duckdb.connect()
        for sql in views.values():
            con.sql(sql)
        return con


def query(con: duckdb.DuckDBPyConnection, sql: str, params=None) -> pl.DataFrame:
    """Run SQL and get a Polars frame; DuckDB errors become one-line StoreErrors."""
    try:
        rel = con.sql(sql, params=params)
        return rel.pl() if rel is not None else pl.DataFrame()
    except duckdb.Error as exc:
        raise StoreError(_one_line(exc)) from None


def check_read_only(sql: str) -> None:
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise StoreError(_one_line(exc)) from None
    if len(statements) != 1:
        raise StoreError(f"expected exactly one SQL statement, got {len(statements)}; run them one at a time")
    kind = statements[0].type
    if kind not in READ_ONLY_TYPES:
        raise StoreError(f"{kind.name} statements are not allowed: ad-hoc SQL over runs is read-only "
                         f"(SELECT/DESCRIBE/SHOW/EXPLAIN); stored runs were not touched")


def read_only_query(data_dir: str | Path, sql: str) -> pl.DataFrame:
    """Validate first (before touching anything), then run one read-only statement."""
    check_read_only(sql)
    with connect(data_dir) as con:
        return query(con, sql)


def describe(data_dir: str | Path) -> pl.DataFrame:
    with connect(data_dir) as con:
        return query(con, "SELECT table_name AS view, string_agg(column_name || ' ' || data_type, ', ' "
                          "ORDER BY ordinal_position) AS columns FROM information_schema.columns "
                          "WHERE table_schema = 'main' GROUP BY table_name ORDER BY table_name")


def _one_line(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) < 400 else text[:397] + "..."

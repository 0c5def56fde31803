"""DuckDB over the run store: one view per table, built fresh by every command.

The views read exactly the files of the runs `store.check.inventory` trusts (explicit file
lists, hive partitioning for the `sweep` column, `union_by_name` so runs written before a
column was added still read); whatever it leaves out is named in a warning. Each command
gets its own in-memory connection with fresh views, so it never answers from stale ones.
`data/runs.duckdb` holds the same views for other DuckDB clients: it is rewritten to a new
file and moved into place, which a client holding the old file open cannot block. Nothing
here writes under `runs/`. Ad-hoc SQL goes through `store.readonly` instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import duckdb
import polars as pl

from gclab.store.check import Inventory, inventory, warning_lines
from gclab.store.errors import StoreError, one_line
from gclab.store.location import parse
from gclab.store.schema import FILE_NAMES, MARKER_TABLE, RENAMED, SCALES, SCHEMAS, physical
from gclab.store.table import table_files, table_schema

DB_FILE = "runs.duckdb"
_DUCK_TYPES = {"string": "VARCHAR", "double": "DOUBLE", "int64": "BIGINT", "int32": "INTEGER", "bool": "BOOLEAN"}


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _empty_select(table: str) -> str:
    cols = ", ".join(f"CAST(NULL AS {_DUCK_TYPES[str(f.type)]}) AS {f.name}" for f in SCHEMAS[table])
    return f"SELECT {cols} WHERE false"


def _renames_read(table: str, source: str) -> str:
    """``source`` (a FROM item) with the table's old column names (store.schema.RENAMED) read as
    the new ones: a file written before a rename fills the new column, the old one is dropped."""
    renames = RENAMED.get(table)
    if not renames:
        return source
    types = {f.name: _DUCK_TYPES[str(f.type)] for f in SCHEMAS[table]}
    old = ", ".join(f"CAST(NULL AS {types[new]}) AS {name}" for name, new in renames.items())
    read_as = ", ".join(f"coalesce({new}, {name}) AS {new}" for name, new in renames.items())
    return (
        f"(SELECT * EXCLUDE ({', '.join(renames)}) REPLACE ({read_as}) FROM "
        f"({_empty_select(table).replace(' WHERE false', f', {old} WHERE false')} UNION ALL BY NAME "
        f"SELECT * FROM {source}))"
    )


def scale_views(sources: dict[str, str]) -> dict[str, str]:
    """CREATE VIEW statements over each table's `sources` relation (SQL of a FROM item):
    `runs_all` holds every stored run, `runs` and the other tables only the runs of the largest
    scale (store.schema.SCALES) present per sweep, so no analysis pools a demo with a full sweep.
    `runs.scale` is filled for runs written before the column: from config_json, else 'cpu'; renamed
    columns are read under their new names (`_renames_read`)."""
    rank = "CASE scale " + " ".join(f"WHEN {sql_literal(s)} THEN {i}" for i, s in enumerate(SCALES)) + " ELSE -1 END"
    out = {
        "runs_all": f"CREATE OR REPLACE VIEW runs_all AS SELECT * REPLACE (coalesce(scale, "
        f"json_extract_string(config_json, '$.scale'), 'cpu') AS scale) "
        f"FROM ({_empty_select(MARKER_TABLE)} UNION ALL BY NAME SELECT * FROM {sources[MARKER_TABLE]})",
        MARKER_TABLE: f"CREATE OR REPLACE VIEW {MARKER_TABLE} AS SELECT * FROM runs_all WHERE (sweep, scale) IN "
        f"(SELECT (sweep, arg_max(scale, {rank})) FROM runs_all GROUP BY sweep)",
    }
    for table in FILE_NAMES:
        if table != MARKER_TABLE:
            out[table] = (
                f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM {_renames_read(table, sources[table])} "
                f"WHERE run_id IN (SELECT run_id FROM {MARKER_TABLE})"
            )
    return out


def delta_select(table: str, relation: str, inbox_runs: str) -> str:
    """A FROM item: store table `table` from `relation` (its Delta files, physical column names; see
    store.table) under its own column names, without the runs the inbox holds (the inbox is newer)."""
    phys = table_schema(table)
    empty = ", ".join(f'CAST(NULL AS {_DUCK_TYPES[str(f.type)]}) AS "{f.name}"' for f in phys)
    names = [f.name for f in SCHEMAS[table] if f.name != "sweep"] + ["sweep"]
    if table == MARKER_TABLE:
        names = SCHEMAS[table].names
    cols = ", ".join(f'"{physical(table, c)}" AS {c}' for c in names)
    return (
        f"(SELECT {cols} FROM (SELECT {empty} WHERE false UNION ALL BY NAME SELECT * FROM {relation}) "
        f"WHERE run_id NOT IN (SELECT run_id FROM {inbox_runs}))"
    )


def with_delta(inbox: dict[str, str], delta: dict[str, str | None]) -> dict[str, str]:
    """Each table's FROM item: its Delta rows (relation in `delta`, None when it has no files) then
    its inbox rows (`inbox`), the inbox winning for a run in both (docs/SCHEMA.md)."""
    out = {}
    for table, source in inbox.items():
        rel = delta.get(table)
        out[table] = (
            source
            if rel is None
            else f"(SELECT * FROM {delta_select(table, rel, inbox[MARKER_TABLE])} UNION ALL BY NAME "
            f"SELECT * FROM {source})"
        )
    return out


def _read_files(files: list[str], *, hive: bool) -> str:
    listed = "[" + ", ".join(sql_literal(f) for f in files) + "]"
    return f"read_parquet({listed}, hive_partitioning = {str(hive).lower()}, union_by_name = true" + (
        ", hive_types_autocast = false)" if hive else ")"
    )


def view_statements(inv: Inventory, delta: dict[str, list[str]] | None = None) -> dict[str, str]:
    """CREATE VIEW statements over the trusted inbox files and the Delta table's files (see
    `scale_views`), `runs_all` and `runs` first."""
    inbox = {}
    for table in FILE_NAMES:
        files = inv.files[table]
        inbox[table] = (
            _read_files([str(p.resolve()) for p in files], hive=True) if files else f"({_empty_select(table)})"
        )
    tables = {t: (_read_files(f, hive=False) if f else None) for t, f in (delta or {}).items()}
    return scale_views(with_delta(inbox, tables))


def scale_notes(con) -> list[str]:
    """One line per sweep stored at several scales: which scale the views use and what they leave out."""
    rows = con.sql(
        "SELECT a.sweep, a.scale, count(*) AS n, bool_or(a.run_id IN (SELECT run_id FROM runs)) AS used "
        "FROM runs_all a GROUP BY ALL ORDER BY a.sweep, a.scale"
    ).fetchall()
    by_sweep: dict[str, list] = {}
    for sweep, scale, n, used in rows:
        by_sweep.setdefault(sweep, []).append((scale, n, used))
    notes = []
    for sweep, scales in by_sweep.items():
        if len(scales) > 1:
            kept = next(f"{n} {scale}-scale runs" for scale, n, used in scales if used)
            left = ", ".join(f"{n} {scale}-scale" for scale, n, used in scales if not used)
            notes.append(
                f"sweep {sweep}: analyses use its {kept}, the largest scale stored; {left} runs left out "
                "(scales are never pooled; they stay in the runs_all view)"
            )
    return notes


def scan(data_dir: str | Path, *, warn: bool = True) -> Inventory:
    """The store's inventory; its problems as warning lines on stderr (one line each)."""
    data_dir = Path(data_dir)
    if data_dir.exists() and not data_dir.is_dir():
        raise StoreError(f"--data {data_dir} is a file; point --data at the store folder (default ./data)")
    inv = inventory(data_dir)
    if warn:
        for line in warning_lines(inv):
            print(f"warning: {line}", file=sys.stderr)
    return inv


def write_shared_db(data_dir: Path, views: dict[str, str]) -> None:
    """Write the views to a new file and move it over `runs.duckdb` (readers keep the old inode)."""
    target = data_dir / DB_FILE
    tmp = data_dir / f".{DB_FILE}.tmp-{os.getpid()}"
    try:
        tmp.unlink(missing_ok=True)
        with duckdb.connect(str(tmp)) as con:
            for sql in views.values():
                con.sql(sql)
        os.replace(tmp, target)
    except (OSError, duckdb.Error) as exc:
        for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
            try:
                leftover.unlink(missing_ok=True)
            except OSError:
                pass
        cause = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        print(
            f"warning: could not refresh {target} ({cause}); this command answers from fresh views, "
            f"other DuckDB clients attaching {target.name} see the old ones",
            file=sys.stderr,
        )


def scan_and_share(data_dir: str | Path, *, warn: bool = True) -> tuple[Inventory, dict[str, list[str]]]:
    """Scan the inbox (warnings on stderr), list the Delta table's current files (store.table), and
    rewrite `runs.duckdb` from both. Committed runs are not verified here: `gclab check` does that.
    On object storage: the table only (no inbox, no shared file; store.remote)."""
    if not parse(data_dir).is_local:
        from gclab.store.remote import committed_files

        return Inventory(), committed_files(parse(data_dir))
    data_dir = Path(data_dir)
    inv = scan(data_dir, warn=warn)
    try:
        delta = table_files(location=parse(data_dir))
    except Exception as exc:  # noqa: BLE001 — delta-rs raises its own types; the message says what to do
        table = data_dir / "delta"
        raise StoreError(f"the store's table {table} cannot be read ({one_line(exc)}); run `gclab check`") from None
    if data_dir.is_dir():  # a read never creates a store
        write_shared_db(data_dir, view_statements(inv, delta))
    return inv, delta


def refresh(data_dir: str | Path, *, warn: bool = True) -> tuple[list[Path], dict[str, str]]:
    """Scan the store, rewrite `runs.duckdb`; return (left-out paths, view statements)."""
    inv, delta = scan_and_share(data_dir, warn=warn)
    return [p.path for p in inv.problems], view_statements(inv, delta)


def views_connection(views: dict[str, str]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for table, sql in views.items():
        try:
            con.sql(sql)
        except duckdb.Error as exc:  # should not happen over verified files; never leave the view missing
            print(f"warning: view {table} could not be built ({one_line(exc)}); it is empty", file=sys.stderr)
            con.sql(f"CREATE OR REPLACE VIEW {table} AS {_empty_select(table if table in SCHEMAS else MARKER_TABLE)}")
    return con


def require_store_at(data: str | Path) -> None:
    """StoreError (one line) unless `data` is a store to read: a local folder (a typo must not read as an
    empty store, nor create one) or a bucket prefix holding a gclab table."""
    if not parse(data).is_local:
        from gclab.store.remote import require_store

        require_store(parse(data))
    elif not Path(data).is_dir():
        what = "a file" if Path(data).exists() else "not there"
        raise StoreError(f"--data {data} is {what}: point --data at the run store folder (default ./data)")


def connect(data_dir: str | Path, *, warn: bool = True) -> duckdb.DuckDBPyConnection:
    """A fresh in-memory connection with one view per table (and `runs.duckdb` refreshed)."""
    if parse(data_dir).is_local:
        con = views_connection(refresh(data_dir, warn=warn)[1])
    else:
        from gclab.store.remote import remote_connection

        con = remote_connection(parse(data_dir))
    if warn:
        for line in scale_notes(con):
            print(f"note: {line}", file=sys.stderr)
    return con


def query(con: duckdb.DuckDBPyConnection, sql: str, params=None) -> pl.DataFrame:
    """Run SQL and get a Polars frame; DuckDB errors become one-line StoreErrors."""
    try:
        rel = con.sql(sql, params=params)
        return rel.pl() if rel is not None else pl.DataFrame()
    except duckdb.Error as exc:
        raise StoreError(one_line(exc)) from None

"""Ad-hoc SQL over the store that cannot write and cannot run away.

Read-only by construction: the connection is in memory and DuckDB itself may open no file
at all (`enable_external_access = false`, no allowed directories, extension install and
autoload off, no spilling to disk, `lock_configuration = true` so a statement cannot undo
that). The tables are the trusted run files (`store.check`) handed to DuckDB as Arrow
datasets, which pyarrow reads; DuckDB never holds a path it could write to. The statement
is also checked first (EXPLAIN and EXPLAIN ANALYZE are checked for what they wrap), so a
write is refused in one line before anything runs.

Bounded: a time limit and a memory limit (both overridable), Ctrl-C interrupts the engine
within a moment, and only the printed rows plus one are fetched, to say "more rows".
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds

from gclab.store.check import Inventory
from gclab.store.db import StoreError, scale_views, scan_and_share
from gclab.store.errors import one_line
from gclab.store.layout import runs_root
from gclab.store.schema import FILE_NAMES, MARKER_TABLE, RENAMED, SCHEMAS

DEFAULT_TIMEOUT_S = 300.0
DEFAULT_MEMORY_LIMIT = "2GB"
SLOW_NOTICE_S = 2.0
STORED = "stored_"  # the registered datasets; the views over them carry the table names


class Interrupted(Exception):
    """Ctrl-C stopped the query."""


def _refuse(kind: str) -> StoreError:
    return StoreError(
        f"{kind} statements are not allowed: ad-hoc SQL over runs is read-only "
        f"(SELECT/DESCRIBE/SHOW/SUMMARIZE/PIVOT/EXPLAIN); stored runs were not touched"
    )


def _first_keywords(text: str) -> list[tuple[str, int]]:
    """(upper-cased token, offset) of the statement's tokens, comments skipped."""
    tokens = duckdb.tokenize(text)
    out = []
    for i, (start, kind) in enumerate(tokens):
        end = tokens[i + 1][0] if i + 1 < len(tokens) else len(text)
        if kind != duckdb.token_type.comment:
            out.append((text[start:end].strip().upper(), start))
    return out


def _explained(text: str) -> list[str]:
    """What an EXPLAIN [ANALYZE] [(options)] statement wraps; both readings when a '(' follows."""
    toks = _first_keywords(text)
    i = 1  # toks[0] is EXPLAIN
    if i < len(toks) and toks[i][0] in ("ANALYZE", "ANALYSE"):
        i += 1
    if i >= len(toks):
        return []
    readings = [text[toks[i][1] :]]
    if toks[i][0] == "(":
        depth = 0
        for j in range(i, len(toks)):
            depth += {"(": 1, ")": -1}.get(toks[j][0], 0)
            if depth == 0:
                if j + 1 < len(toks):
                    readings.append(text[toks[j + 1][1] :])
                break
    return readings


def _check_statement(stmt, depth: int = 0) -> None:
    kind = stmt.type
    if kind == duckdb.StatementType.SELECT:
        return
    if kind == duckdb.StatementType.MULTI and _first_keywords(stmt.query)[0][0] in ("PIVOT", "UNPIVOT"):
        return  # PIVOT runs as several statements over an in-memory catalog
    if kind == duckdb.StatementType.EXPLAIN and depth < 4:
        parsed = 0
        for inner in _explained(stmt.query):
            try:
                statements = duckdb.extract_statements(inner)
            except duckdb.Error:
                continue
            if len(statements) != 1:
                raise StoreError("EXPLAIN must wrap exactly one statement")
            _check_statement(statements[0], depth + 1)
            parsed += 1
        if parsed:
            return
        raise StoreError("EXPLAIN must wrap one read-only statement, e.g. EXPLAIN SELECT ...")
    raise _refuse(kind.name)


def check_read_only(sql: str) -> None:
    """Refuse (one-line StoreError) anything but one read-only statement, looking inside EXPLAIN."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise StoreError(one_line(exc)) from None
    if len(statements) != 1:
        raise StoreError(f"expected exactly one SQL statement, got {len(statements)}; run them one at a time")
    _check_statement(statements[0])


def _dataset(inv: Inventory, table: str, root: Path):
    schema = SCHEMAS[table].remove_metadata()
    for old, new in RENAMED.get(table, {}).items():  # read by the views as `new` (store.db)
        schema = schema.append(pa.field(old, schema.field(new).type))
    files = [str(p) for p in inv.files[table]]
    if table != MARKER_TABLE:  # the sweep comes from the folder name, as hive partitioning gives it
        schema = schema.append(pa.field("sweep", pa.string()))
    if not files:
        return schema.empty_table()
    return ds.dataset(
        files,
        schema=schema,
        format="parquet",
        partition_base_dir=str(root),
        partitioning=ds.partitioning(pa.schema([("sweep", pa.string())]), flavor="hive")
        if table != MARKER_TABLE
        else None,
    )


def sandbox(data_dir: str | Path, *, memory_limit: str = DEFAULT_MEMORY_LIMIT, warn: bool = True):
    """An in-memory connection that can read the trusted runs and nothing else, and write nothing."""
    inv = scan_and_share(data_dir, warn=warn)
    try:
        con = duckdb.connect(
            config={
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
                "memory_limit": memory_limit,
                "temp_directory": "",
            }
        )
    except duckdb.Error as exc:
        raise StoreError(f"memory limit {memory_limit!r}: {one_line(exc)}; use e.g. --memory-limit 4GB") from None
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    root = runs_root(data_dir).resolve()
    for table in FILE_NAMES:
        con.register(f"{STORED}{table}", _dataset(inv, table, root))
    # The same views as every other command (one scale per sweep, `runs_all` for all of them).
    for sql in scale_views({t: f"{STORED}{t}" for t in FILE_NAMES}).values():
        con.execute(sql)
    return con


def bounded_query(
    con,
    sql: str,
    *,
    max_rows: int,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    say=lambda msg: print(msg, file=sys.stderr, flush=True),
) -> tuple[pl.DataFrame, bool]:
    """Run one checked statement; (first max_rows rows, whether there are more). The engine runs
    in a thread so that Ctrl-C and the time limit can interrupt it at once."""
    out: dict = {}
    done = threading.Event()  # not Thread.join: an interrupted join can mark a live thread dead (3.11)

    def work():
        try:
            rel = con.sql(sql)
            out["df"] = rel.limit(max_rows + 1).pl() if rel is not None else pl.DataFrame()
        except Exception as exc:  # noqa: BLE001 — re-raised in the caller's thread
            out["exc"] = exc
        finally:
            done.set()

    # Ctrl-C must reach us even when started with SIGINT ignored (e.g. from a background job).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    t0 = time.monotonic()
    threading.Thread(target=work, daemon=True, name="query").start()
    noticed = False
    try:
        while not done.wait(0.1):
            elapsed = time.monotonic() - t0
            if not noticed and elapsed > SLOW_NOTICE_S:
                say(f"query running (Ctrl-C stops it; time limit {timeout_s:g} s, --timeout to change)")
                noticed = True
            if elapsed > timeout_s:
                con.interrupt()
                done.wait(10)
                raise StoreError(
                    f"query stopped at the time limit of {timeout_s:g} s; "
                    f"narrow it, or raise the limit with --timeout SECONDS (make sql TIMEOUT=...)"
                )
    except KeyboardInterrupt:
        con.interrupt()
        try:
            done.wait(10)
        except KeyboardInterrupt:  # a second Ctrl-C while the engine unwinds
            pass
        raise Interrupted from None
    if "exc" in out:
        text = one_line(out["exc"])
        if "Out of Memory" in text:  # DuckDB's advice (a temp directory) does not apply here
            text = (
                text.split(" Database is launched")[0] + "; the query needs more than the memory limit: "
                "narrow it, or raise the limit with --memory-limit (make sql MEMORY=...)"
            )
        raise StoreError(text) from None
    df = out["df"]
    return df.head(max_rows), df.height > max_rows


def describe(con) -> pl.DataFrame:
    return con.sql(
        "SELECT table_name AS view, string_agg(column_name || ' ' || data_type, ', ' "
        "ORDER BY ordinal_position) AS columns FROM information_schema.columns "
        f"WHERE table_schema = 'main' AND NOT starts_with(table_name, '{STORED}') "
        "GROUP BY table_name ORDER BY table_name"
    ).pl()


def read_only_query(data_dir: str | Path, sql: str, *, max_rows: int = 10_000, **limits) -> pl.DataFrame:
    """Check first (before touching anything), then run one read-only statement in the sandbox."""
    check_read_only(sql)
    with sandbox(data_dir) as con:
        return bounded_query(con, sql, max_rows=max_rows, **limits)[0]

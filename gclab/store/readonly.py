"""Ad-hoc SQL over the store that cannot write and cannot run away.

Read-only by construction: the connection is in memory and DuckDB itself may open no file
at all (`enable_external_access = false`, no allowed directories, extension install and
autoload off, no spilling to disk, `lock_configuration = true` so a statement cannot undo
that). The tables are the trusted run files (`store.check`) handed to DuckDB as Arrow
datasets, which pyarrow reads; DuckDB never holds a path it could write to. The statement
is also checked first, by DuckDB's own parser: its type, then its whole parse tree (DuckDB's
`json_serialize_sql`), so a write nested anywhere (`WITH d AS (DELETE ... RETURNING *) SELECT`)
is refused in one line before anything runs; EXPLAIN [ANALYZE] is checked for what it wraps.

Bounded: a time limit, a memory limit and a row limit (finite positive numbers, all
overridable). The memory limit bounds DuckDB's own operators and, separately, the result this
process fetches (Arrow batches, stopped once their size passes the limit); pyarrow's reading
of the Parquet files and DuckDB's untracked allocations (e.g. large strings) are outside it, so
peak process memory can exceed it (README, "What the store guarantees"). Ctrl-C interrupts the
engine within a moment, and only the printed rows plus one are fetched, to say "more rows".
"""

from __future__ import annotations

import json
import math
import re
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
from gclab.store.db import StoreError, scale_views, scan_and_share, with_delta
from gclab.store.errors import one_line
from gclab.store.layout import runs_root
from gclab.store.location import parse
from gclab.store.schema import FILE_NAMES, MARKER_TABLE, RENAMED, SCHEMAS
from gclab.store.table import table_dataset

DEFAULT_TIMEOUT_S = 300.0
DEFAULT_MEMORY_LIMIT = "2GB"
SLOW_NOTICE_S = 2.0
STORED = "stored_"  # the registered datasets; the views over them carry the table names
COMMITTED = "stored_delta_"  # the registered Delta files of each table (store.table)


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


# Parse-tree nodes of a read: anything else (DELETE_QUERY_NODE, INSERT_..., UPDATE_...) is refused.
_READ_NODES = {"SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE", "CTE_NODE"}


def _node_types(tree) -> set[str]:
    """Every query-node type in a json_serialize_sql tree (walked without recursion: trees can be deep)."""
    found, todo = set(), [tree]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            kind = item.get("type")
            if isinstance(kind, str) and kind.endswith("_NODE"):
                found.add(kind)
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    return found


def _check_select_tree(query: str) -> None:
    """A SELECT is read-only only if no write hides inside it (a data-modifying CTE): DuckDB parses it
    (json_serialize_sql, in a connection of its own) and every query node in the tree must be a read."""
    with duckdb.connect() as con:
        try:
            row = con.execute("SELECT json_serialize_sql(?)", [query]).fetchone()
            tree = json.loads(row[0] if row else "{}")
        except (duckdb.Error, RecursionError, ValueError) as exc:
            raise StoreError(f"the statement could not be checked ({one_line(exc)}); simplify it") from None
    if tree.get("error"):
        raise StoreError(f"the statement could not be checked ({tree.get('error_message')}); simplify it")
    writes = sorted(_node_types(tree) - _READ_NODES)
    if writes:
        raise _refuse(writes[0].removesuffix("_QUERY_NODE").removesuffix("_NODE") + " (inside a SELECT)")


def _check_statement(stmt, depth: int = 0) -> None:
    kind = stmt.type
    if kind == duckdb.StatementType.SELECT:
        _check_select_tree(stmt.query)
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


_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KIB|MIB|GIB|TIB)?\s*", re.IGNORECASE)
_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_UNITS |= {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def memory_bytes(limit: str) -> int:
    """Bytes of a memory limit such as '2GB' or '512MiB'; one-line StoreError unless a positive size."""
    m = _SIZE.fullmatch(str(limit))
    n = float(m.group(1)) * _UNITS[(m.group(2) or "B").upper()] if m else math.nan
    if not (math.isfinite(n) and n >= 1):
        raise StoreError(f"--memory-limit {limit!r} is not a positive size; use e.g. --memory-limit 4GB")
    return int(n)


def check_limits(*, max_rows, timeout_s, memory_limit: str | None = None) -> None:
    """One-line StoreError unless rows is a positive whole number and the time a finite positive number."""
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise StoreError(f"--max-rows {max_rows} is not a positive whole number; use e.g. --max-rows 50")
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not 0 < timeout_s < math.inf:
        raise StoreError(f"--timeout {timeout_s} is not a finite positive number of seconds; use e.g. --timeout 300")
    if memory_limit is not None:
        memory_bytes(memory_limit)


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
    memory_bytes(memory_limit)
    inv, delta = scan_and_share(data_dir, warn=warn)
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
    location = parse(data_dir)
    for table in FILE_NAMES:
        con.register(f"{STORED}{table}", _dataset(inv, table, root))
        if delta[table]:
            con.register(f"{COMMITTED}{table}", table_dataset(table=table, files=delta[table], location=location))
    committed = {t: (f"{COMMITTED}{t}" if delta[t] else None) for t in FILE_NAMES}
    # The same views as every other command (one scale per sweep, `runs_all` for all of them).
    for sql in scale_views(with_delta({t: f"{STORED}{t}" for t in FILE_NAMES}, committed)).values():
        con.execute(sql)
    return con


def bounded_query(
    con,
    sql: str,
    *,
    max_rows: int,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
    say=lambda msg: print(msg, file=sys.stderr, flush=True),
) -> tuple[pl.DataFrame, bool]:
    """Run one checked statement; (first max_rows rows, whether there are more). The engine runs
    in a thread so that Ctrl-C and the time limit can interrupt it at once; the fetched result is
    read in Arrow batches and stopped once it holds more than `memory_limit` bytes."""
    check_limits(max_rows=max_rows, timeout_s=timeout_s, memory_limit=memory_limit)
    budget = memory_bytes(memory_limit)
    out: dict = {}
    done = threading.Event()  # not Thread.join: an interrupted join can mark a live thread dead (3.11)

    def work():
        try:
            rel = con.sql(sql)
            out["df"] = _fetch(rel.limit(max_rows + 1), budget) if rel is not None else pl.DataFrame()
        except Exception as exc:  # noqa: BLE001 — re-raised in the caller's thread
            out["exc"] = exc
        finally:
            done.set()

    # Ctrl-C must reach us even when started with SIGINT ignored (e.g. from a background job).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Thread(target=work, daemon=True, name="query").start()
    _wait(con, done, timeout_s=timeout_s, say=say)
    _raise_failure(out)
    df = out["df"]
    return df.head(max_rows), df.height > max_rows


def _wait(con, done: threading.Event, *, timeout_s: float, say) -> None:
    """Wait for the query thread; interrupt the engine at the time limit (StoreError) or on Ctrl-C (Interrupted)."""
    t0 = time.monotonic()
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


def _raise_failure(out: dict) -> None:
    """The query thread's exception as one StoreError line that says what to do."""
    if isinstance(out.get("exc"), ResultTooLarge):
        raise StoreError(
            f"{out['exc']}; select fewer columns or rows, or raise the limit with --memory-limit (make sql MEMORY=...)"
        )
    if "exc" in out:
        text = one_line(out["exc"])
        if "Out of Memory" in text:  # DuckDB's advice (a temp directory) does not apply here
            text = (
                text.split(" Database is launched")[0] + "; the query needs more than the memory limit: "
                "narrow it, or raise the limit with --memory-limit (make sql MEMORY=...)"
            )
        raise StoreError(text) from None


class ResultTooLarge(Exception):
    pass


def _fetch(rel, budget: int) -> pl.DataFrame:
    """The relation's rows as a frame, fetched in Arrow batches; ResultTooLarge past `budget` bytes."""
    reader = rel.to_arrow_reader(batch_size=2048)
    batches, held = [], 0
    for batch in reader:
        held += batch.nbytes
        if held > budget:
            raise ResultTooLarge(f"the result holds more than the memory limit ({held:,} bytes fetched so far)")
        batches.append(batch)
    return pl.DataFrame(pa.Table.from_batches(batches, schema=reader.schema))


def describe(con) -> pl.DataFrame:
    return con.sql(
        "SELECT table_name AS view, string_agg(column_name || ' ' || data_type, ', ' "
        "ORDER BY ordinal_position) AS columns FROM information_schema.columns "
        f"WHERE table_schema = 'main' AND NOT starts_with(table_name, '{STORED}') "
        "GROUP BY table_name ORDER BY table_name"
    ).pl()


def read_only_query(data_dir: str | Path, sql: str, *, max_rows: int = 10_000, **limits) -> pl.DataFrame:
    """Check first (before touching anything), then run one read-only statement in the sandbox."""
    check_limits(max_rows=max_rows, timeout_s=limits.get("timeout_s", DEFAULT_TIMEOUT_S))
    check_read_only(sql)
    memory_limit = limits.get("memory_limit", DEFAULT_MEMORY_LIMIT)
    with sandbox(data_dir, memory_limit=memory_limit) as con:
        return bounded_query(con, sql, max_rows=max_rows, **limits)[0]

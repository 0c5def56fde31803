"""Reading a store on object storage (`--data s3://bucket/prefix`): its Delta table and nothing else.

A bucket has no inbox of run folders and no `runs.duckdb` file: each command opens the table's
current snapshot, registers each store table's files as a pyarrow dataset on its own DuckDB
connection, and builds the same views over them as on local disk (`db.scale_views`, docs/SCHEMA.md).
"""

from __future__ import annotations

import duckdb

from gclab.store.errors import StoreError, one_line
from gclab.store.location import Location
from gclab.store.schema import FILE_NAMES, MARKER_TABLE
from gclab.store.table import exists, table_dataset, table_files

COMMITTED = "committed_"  # the registered datasets; the views over them carry the table names


def require_store(location: Location) -> None:
    """StoreError (one line) unless the bucket answers and holds a gclab table at `location`."""
    from gclab.store.lease import require_bucket

    require_bucket(location)
    try:
        found = exists(location=location)
    except Exception as exc:  # noqa: BLE001 — delta-rs raises its own types
        raise StoreError(f"--data {location.uri}: the table cannot be read ({one_line(exc)})") from None
    if not found:
        raise StoreError(
            f"--data {location.uri}: no gclab store there (no table at {location.table_uri}); "
            "collect into it first or fix --data"
        )


def committed_files(location: Location) -> dict[str, list[str]]:
    """Per store table, the data files of the table's current snapshot (after `require_store`)."""
    require_store(location)
    try:
        return table_files(location=location)
    except Exception as exc:  # noqa: BLE001 — delta-rs raises its own types
        raise StoreError(f"--data {location.uri}: the table cannot be read ({one_line(exc)})") from None


def register(con: duckdb.DuckDBPyConnection, location: Location, files: dict[str, list[str]]) -> dict[str, str | None]:
    """Register each store table's files on `con`; its relation name, None for a table with no rows."""
    names: dict[str, str | None] = {}
    for table in FILE_NAMES:
        names[table] = f"{COMMITTED}{table}" if files[table] else None
        if files[table]:
            con.register(f"{COMMITTED}{table}", table_dataset(table=table, files=files[table], location=location))
    return names


def remote_connection(location: Location) -> duckdb.DuckDBPyConnection:
    """A fresh in-memory connection with one view per table over the object store's table."""
    from gclab.store.db import _empty_select, scale_views, with_delta

    files = committed_files(location)
    con = duckdb.connect()
    committed = register(con, location, files)
    no_inbox = {t: f"({_empty_select(t)})" for t in FILE_NAMES}
    for sql in scale_views(with_delta(no_inbox, committed)).values():
        con.execute(sql)
    return con


def verify(location: Location) -> tuple[int, list[str]]:
    """(committed runs, one line per problem): every data file of the snapshot read whole."""
    import pyarrow.parquet as pq
    from pyarrow.fs import FileSystem

    files = committed_files(location)
    fs, _ = FileSystem.from_uri(location.uri)
    problems = []
    for table, uris in files.items():
        for uri in uris:
            try:
                with fs.open_input_file(uri.split("://", 1)[1]) as handle:
                    pq.ParquetFile(handle, page_checksum_verification=True).read()
            except Exception as exc:  # noqa: BLE001 — any unreadable byte is a problem to name, not a crash
                problems.append(f"{table}: {uri}: {one_line(exc, with_type=True)}")
    runs = sum(
        table_dataset(table=MARKER_TABLE, files=uris, location=location).count_rows()
        for uris in [files[MARKER_TABLE]]
        if uris
    )
    return runs, problems

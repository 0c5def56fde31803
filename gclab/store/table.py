"""The store's Delta table: all seven store tables in one Delta Lake table (delta-rs), partitioned by `table`.

One table because Delta has no multi-table transactions: one `write_deltalake` commit per batch makes
its runs visible in every store table at once or not at all (docs/SCHEMA.md, "Where runs are stored").
Its columns are named by `store.schema.physical`. Columns added to gclab/store/schema.py are merged
into the table's schema by the next commit; files written before read them as null.

Delta's log is the only log: the run folders (`store.layout`) are the inbox, and a batch of them
becomes table rows in one commit (`store.ingest`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from deltalake import DeltaTable, write_deltalake

from gclab.store.errors import StoreError
from gclab.store.location import Location
from gclab.store.schema import COMMON, FILE_NAMES, MARKER_TABLE, PARTITION, RENAMED, SCHEMAS, physical


def table_schema(table: str) -> pa.Schema:
    """The Delta columns one store table's rows fill (partition column excluded), in schema.py's order."""
    fields = [pa.field(physical(table, f.name), f.type) for f in SCHEMAS[table] if f.name not in COMMON]
    return pa.schema([pa.field("run_id", pa.string()), pa.field("sweep", pa.string()), *fields])


def full_schema() -> pa.Schema:
    """Every Delta column: the partition, the common columns, then each store table's own."""
    fields = [pa.field(PARTITION, pa.string()), pa.field("run_id", pa.string()), pa.field("sweep", pa.string())]
    for table in SCHEMAS:
        fields += [f for f in table_schema(table) if f.name not in COMMON]
    return pa.schema(fields)


def exists(*, location: Location) -> bool:
    return DeltaTable.is_deltatable(location.table_uri, storage_options=location.storage_options or None)


def open_table(*, location: Location) -> DeltaTable | None:
    """The current snapshot (a checkpoint plus the commits after it: O(1) in stored runs), or None."""
    if not exists(location=location):
        return None
    dt = DeltaTable(location.table_uri, storage_options=location.storage_options or None)
    # Without deletion vectors the add actions list exactly the live rows' files; delta-rs never
    # writes them, so a table that has them was written by another tool and would read wrong.
    if "deletionVectors" in (dt.protocol().reader_features or []):
        raise StoreError(
            f"{location.table_uri} uses deletion vectors, which gclab does not read; "
            "rewrite it without them (e.g. OPTIMIZE with deletion vectors purged) or restore it from gclab"
        )
    return dt


def _file_uri(location: Location, rel: str) -> str:
    """A data file's absolute path (local: runs.duckdb lists it for clients in any folder) or URI."""
    if "://" in rel or rel.startswith("/"):
        return rel
    if location.local is not None:
        return os.path.abspath(os.path.join(location.table_uri, rel))
    return f"{location.table_uri.rstrip('/')}/{rel}"


def table_files(*, location: Location, dt: DeltaTable | None = None) -> dict[str, list[str]]:
    """Per store table, the data files of the current snapshot (absolute paths or URIs)."""
    out: dict[str, list[str]] = {t: [] for t in SCHEMAS}
    dt = dt if dt is not None else open_table(location=location)
    if dt is None:
        return out
    actions = pa.table(dt.get_add_actions(flatten=True))
    paths = actions.column("path").to_pylist()
    parts = actions.column(f"partition.{PARTITION}").to_pylist()
    for rel, table in zip(paths, parts):
        if table in out:
            out[table].append(_file_uri(location, rel))
    return out


def table_dataset(*, table: str, files: Sequence[str], location: Location) -> ds.Dataset:
    """A pyarrow dataset of one store table's Delta files, with the physical columns of `table_schema`."""
    fs = None
    if not location.is_local:
        from pyarrow.fs import FileSystem

        fs, _ = FileSystem.from_uri(location.uri)
        files = [f.split("://", 1)[1] for f in files]
    return ds.dataset(list(files), schema=table_schema(table), format="parquet", filesystem=fs)


def stored_runs(*, location: Location, run_ids: Sequence[str] | None = None) -> pa.Table:
    """(run_id, sweep, status) of every run in the table, or of `run_ids` only (filtered in the scan,
    so asking about one run does not build rows for every stored one); reads the runs partition only."""
    files = table_files(location=location)[MARKER_TABLE]
    cols = ["run_id", "sweep", physical(MARKER_TABLE, "status")]
    if not files:
        return pa.table({"run_id": [], "sweep": [], "status": []}, schema=_ID_SCHEMA)
    where = None if run_ids is None else ds.field("run_id").isin(pa.array(list(run_ids), pa.string()))
    got = table_dataset(table=MARKER_TABLE, files=files, location=location).to_table(columns=cols, filter=where)
    return got.rename_columns(["run_id", "sweep", "status"])


_ID_SCHEMA = pa.schema([("run_id", pa.string()), ("sweep", pa.string()), ("status", pa.string())])


def _read_file(path: Path, table: str) -> pa.Table:
    """One table file of a run folder with the current schema: old names read as new, missing columns null."""
    data = pq.read_table(path)
    for old, new in RENAMED.get(table, {}).items():
        if old in data.column_names and new not in data.column_names:
            data = data.rename_columns([new if n == old else n for n in data.column_names])
    n = data.num_rows
    arrays = [
        data.column(f.name).cast(f.type) if f.name in data.column_names else pa.nulls(n, f.type) for f in SCHEMAS[table]
    ]
    return pa.Table.from_arrays(arrays, names=SCHEMAS[table].names)


def run_tables(*, run_dir: Path) -> dict[str, pa.Table]:
    """One verified run folder's tables (current schema; `sweep` from its run.parquet in every one)."""
    sweep = pq.read_table(run_dir / FILE_NAMES[MARKER_TABLE], columns=["sweep"]).column(0)[0].as_py()
    out = {}
    for table, name in FILE_NAMES.items():
        if (run_dir / name).exists():
            data = _read_file(run_dir / name, table)
            if table != MARKER_TABLE:
                data = data.append_column("sweep", pa.array([sweep] * data.num_rows, pa.string()))
            out[table] = data
    return out


def batch_tables(*, run_dirs: Sequence[Path]) -> dict[str, pa.Table]:
    """The runs' rows per store table, in the store table's own columns (plus `sweep`)."""
    per_table: dict[str, list[pa.Table]] = {t: [] for t in SCHEMAS}
    for d in run_dirs:
        for table, data in run_tables(run_dir=Path(d)).items():
            per_table[table].append(data)
    return {t: pa.concat_tables(frames) for t, frames in per_table.items() if frames}


WIDE_ROWS = 32_768  # rows per batch handed to delta-rs: each is widened to every store table's columns


def wide_batches(*, tables: dict[str, pa.Table]) -> pa.RecordBatchReader:
    """The rows in the Delta table's physical columns (see the module docstring), widened one batch at a
    time as delta-rs reads them: the other store tables' columns are null, and only one batch of
    them is ever in memory."""
    schema = full_schema()

    def batches():
        for table, data in tables.items():
            for batch in data.to_batches(max_chunksize=WIDE_ROWS):
                n = batch.num_rows
                cols = {physical(table, c): batch.column(c) for c in batch.schema.names}
                cols[PARTITION] = pa.array([table] * n, pa.string())
                yield pa.RecordBatch.from_arrays([cols.get(f.name, pa.nulls(n, f.type)) for f in schema], schema=schema)

    return pa.RecordBatchReader.from_batches(schema, batches())


def _in_list(run_ids: Iterable[str]) -> str:
    return "(" + ", ".join("'" + r.replace("'", "''") + "'" for r in run_ids) + ")"


def commit_runs(*, location: Location, run_dirs: Sequence[Path]) -> list[str]:
    """Commit the run folders (complete and verified) as ONE Delta commit (`commit_tables`); returns their run_ids."""
    if not run_dirs:
        return []
    return commit_tables(location=location, tables=batch_tables(run_dirs=run_dirs))


def commit_tables(*, location: Location, tables: dict[str, pa.Table]) -> list[str]:
    """Commit per-store-table frames (each in the store table's own columns plus `sweep`, as
    `batch_tables` returns them; `runs` among them) as ONE Delta commit; returns their run_ids.

    Runs already in the table are replaced in that same commit (overwrite by predicate over the
    batch's ids, which rewrites the stored files holding them); otherwise it is a plain append,
    which reads no stored data. Either way a reader sees every run of the batch or none of it."""
    if MARKER_TABLE not in tables:
        raise StoreError(f"commit_tables got no {MARKER_TABLE!r} frame; pass each run's {MARKER_TABLE} row too")
    ids = pc.unique(tables[MARKER_TABLE].column("run_id")).to_pylist()
    if not ids:
        return []
    stored = set(stored_runs(location=location).column("run_id").to_pylist()) if exists(location=location) else set()
    again = sorted(stored.intersection(ids))
    write_deltalake(
        location.table_uri,
        wide_batches(tables=tables),
        partition_by=[PARTITION],
        mode="overwrite" if again else "append",
        predicate=f"run_id IN {_in_list(ids)}" if again else None,
        schema_mode="merge",
        storage_options=location.storage_options or None,
    )
    return ids


def delete_runs(*, location: Location, run_ids: Sequence[str]) -> None:
    """Logically delete runs from every store table (Delta keeps the files until vacuum's retention)."""
    dt = open_table(location=location)
    if dt is not None and run_ids:
        dt.delete(f"run_id IN {_in_list(run_ids)}")


def row_counts(
    *, location: Location, run_ids: Sequence[str], files: dict[str, list[str]]
) -> dict[tuple[str, str], int]:
    """(table, run_id) → rows these runs have in `files` (a commit's new files: reading them back costs
    what the commit wrote, not what the table holds)."""
    want = pa.array(list(run_ids), pa.string())
    out: dict[tuple[str, str], int] = {}
    for table, paths in files.items():
        if not paths:
            continue
        got = table_dataset(table=table, files=paths, location=location).to_table(
            columns=["run_id"], filter=pc.is_in(pc.field("run_id"), value_set=want)
        )
        for row in got.group_by("run_id").aggregate([([], "count_all")]).to_pylist():
            out[(table, row["run_id"])] = row["count_all"]
    return out

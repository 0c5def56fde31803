"""Where runs live on disk and how they get there without ever exposing a half file.

`data/runs/sweep=<sweep>/run_id=<run_id>/<table file>`. Every file is written under a
dot-prefixed temporary name that no read glob matches, then moved into place with
`os.replace` (atomic on POSIX). `run.parquet` goes last: its presence marks the run complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from gclab.store.schema import FILE_NAMES, MARKER_TABLE, SCHEMAS

RUNS_DIR = "runs"
QUARANTINE_DIR = "quarantine"
PARQUET_MAGIC = b"PAR1"


def run_id_of(config: Mapping[str, Any]) -> str:
    """Stable 12-hex-digit id of a resolved config: canonical JSON (sorted keys, no spaces) → sha256.

    JSON float repr is the shortest round-trip repr, identical on every platform and Python 3.
    """
    canon = json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canon.encode()).hexdigest()[:12]


def runs_root(data_dir: str | Path) -> Path:
    return Path(data_dir) / RUNS_DIR


def run_dir(data_dir: str | Path, sweep: str, run_id: str) -> Path:
    return runs_root(data_dir) / f"sweep={sweep}" / f"run_id={run_id}"


def has_parquet_footer(path: Path) -> bool:
    """Cheap integrity check: both magic numbers present and the footer length fits the file."""
    try:
        size = path.stat().st_size
        if size < 12:
            return False
        with open(path, "rb") as fh:
            head = fh.read(4)
            fh.seek(size - 8)
            tail = fh.read(8)
    except OSError:
        return False
    footer_len = int.from_bytes(tail[:4], "little")
    return head == PARQUET_MAGIC and tail[4:] == PARQUET_MAGIC and footer_len + 12 <= size


def is_complete(folder: Path) -> bool:
    return has_parquet_footer(folder / FILE_NAMES[MARKER_TABLE])


def completed_run_ids(data_dir: str | Path, sweep: str | None = None) -> set[str]:
    pattern = f"sweep={sweep}/run_id=*" if sweep else "sweep=*/run_id=*"
    return {p.name.removeprefix("run_id=") for p in runs_root(data_dir).glob(pattern) if is_complete(p)}


def to_arrow(table: str, columns: Mapping[str, Any] | pa.Table) -> pa.Table:
    """Cast columns to the table's explicit schema; unknown columns are a bug, missing ones are null."""
    if isinstance(columns, pa.Table):
        columns = {name: columns.column(name) for name in columns.column_names}
    schema = SCHEMAS[table]
    unknown = set(columns) - set(schema.names)
    if unknown:
        raise KeyError(f"{table}: columns {sorted(unknown)} are not in gclab/store/schema.py; add them there first")
    n = len(next(iter(columns.values()))) if columns else 0
    arrays = [pa.array(columns[f.name], type=f.type) if f.name in columns else pa.nulls(n, f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def write_atomic(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    # Page checksums let `store.check` detect a flipped byte in any data page.
    pq.write_table(table, tmp, compression="zstd", write_page_checksum=True)
    os.replace(tmp, path)


def quarantine(data_dir: str | Path, entry: Path) -> Path:
    """Move `entry` (a run folder or a stray under runs/) to `data/quarantine/`, same relative
    path, never overwriting: nothing is deleted, and the next collect re-runs a moved run."""
    rel = entry.relative_to(runs_root(data_dir))
    target = Path(data_dir) / QUARANTINE_DIR / rel
    n = 1
    while target.exists():
        target = Path(data_dir) / QUARANTINE_DIR / rel.parent / f"{rel.name}.{n}"
        n += 1
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(entry, target)
    return target


class RunFolder:
    """The folder of one run, written by one process. Call `write` per table, `finish` last."""

    def __init__(self, data_dir: str | Path, sweep: str, run_id: str):
        self.path = run_dir(data_dir, sweep, run_id)
        self.run_id = run_id

    def start(self) -> None:
        # The runner only starts runs that are missing, incomplete or failed: start afresh.
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)

    def write(self, table: str, columns: Mapping[str, Any] | pa.Table) -> None:
        if table == MARKER_TABLE:
            raise ValueError("write the runs row with finish(), which goes last")
        write_atomic(to_arrow(table, columns), self.path / FILE_NAMES[table])

    def finish(self, run_row: Mapping[str, Any]) -> None:
        write_atomic(to_arrow(MARKER_TABLE, {k: [v] for k, v in run_row.items()}), self.path / FILE_NAMES[MARKER_TABLE])

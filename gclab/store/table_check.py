"""`gclab check` for the Delta table: every data file of the current snapshot read whole, and its repair.

A file is sound when it exists, has the size its add action records, reads in full (footer, every
data page, page checksums verified where stored) and holds the recorded number of rows. Repair moves
a bad file to `data/quarantine/delta/` (never deleting it), removes it from the table (delta-rs FSCK:
`DeltaTable.repair`, which drops add actions whose file is gone), then logically deletes the runs that
had rows in it from every store table, so the table never serves a partial run and the next collect
runs them again. A kill between the move and FSCK leaves the file missing, which the next check
reports and repairs the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gclab.store.check import Problem
from gclab.store.errors import one_line
from gclab.store.layout import QUARANTINE_DIR
from gclab.store.location import TABLE_DIR, Location
from gclab.store.table import PARTITION, delete_runs, open_table, stored_runs


@dataclass(frozen=True)
class BadFile:
    problem: Problem
    rel: str  # path inside the table folder
    run_range: tuple[str | None, str | None]  # run_id min/max from the add action's statistics


def _verify(path: Path, size: int, rows: int) -> str | None:
    """Why the file cannot be trusted, or None."""
    try:
        if path.stat().st_size != size:
            return f"size {path.stat().st_size} bytes, the table recorded {size}"
        with pq.ParquetFile(path, page_checksum_verification=True) as f:
            got = f.read().num_rows
    except (OSError, pa.ArrowException, ValueError) as exc:
        return one_line(exc, with_type=True)
    return None if got == rows else f"{got} rows, the table recorded {rows}"


def verify_table(*, location: Location) -> list[BadFile]:
    """Every data file of the local table's current snapshot, read whole; the bad ones."""
    dt = open_table(location=location)
    if dt is None or location.local is None:
        return []
    actions = pa.table(dt.get_add_actions(flatten=True)).to_pylist()
    root = location.local / TABLE_DIR
    bad = []
    for a in actions:
        why = _verify(root / a["path"], a["size_bytes"], a["num_records"])
        if why is not None:
            problem = Problem(root / a["path"], "unreadable", f"{a[f'partition.{PARTITION}']} table file: {why}")
            bad.append(BadFile(problem, a["path"], (a.get("min.run_id"), a.get("max.run_id"))))
    return bad


def _runs_in(path: Path, run_range: tuple[str | None, str | None], location: Location) -> list[str]:
    """The runs with rows in a bad file: its run_id column if that still reads, else every stored
    run within the file's recorded run_id range (more than needed, never fewer)."""
    try:
        return pc.unique(pq.read_table(path, columns=["run_id"]).column(0)).to_pylist()
    except (OSError, pa.ArrowException, ValueError, KeyError):
        pass
    ids = stored_runs(location=location).column("run_id").to_pylist()
    lo, hi = run_range
    return [r for r in ids if (lo is None or r >= lo) and (hi is None or r <= hi)]


def repair_table(*, location: Location, bad: list[BadFile], say=print) -> None:
    """Quarantine each bad file, drop it from the table, and logically delete the runs it held part of."""
    if location.local is None or not bad:
        return
    root = location.local / TABLE_DIR
    runs: set[str] = set()
    for b in bad:
        path = root / b.rel
        runs.update(_runs_in(path, b.run_range, location))
        if os.path.lexists(path):
            target = location.local / QUARANTINE_DIR / TABLE_DIR / b.rel
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
            say(f"moved {path} -> {target}")
    dt = open_table(location=location)
    if dt is not None:
        dt.repair(dry_run=False)
    delete_runs(location=location, run_ids=sorted(runs))
    say(f"removed {len(bad)} files from the table; {len(runs)} runs they held part of are deleted and run again")

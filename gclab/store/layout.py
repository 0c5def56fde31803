"""Where runs live on disk and how they get there without ever exposing a half run.

`data/runs/sweep=<sweep>/run_id=<run_id>/<table file>`. A writer holds the run's claim
(`store.claim`) and writes every file into a private, dot-prefixed folder next to the run's
(`.run_id=<id>.new`, which no read ever lists), `run.parquet` last. `finish` then swaps that folder
with the stored one in one `renameat2(RENAME_EXCHANGE)` and removes what it swapped out: until
then readers see the old run whole, after it the new run whole, never a mix of two writers.
Where the kernel cannot exchange, two renames with the old run parked at `.run_id=<id>.old`, which
the next writer of that run puts back if it was killed in between.
"""

from __future__ import annotations

import ctypes
import errno
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


def _links_under(root: Path, entry: Path) -> Path | None:
    """The first symbolic link on the way from `root` down to `entry` (entry excluded), if any."""
    here = root
    for part in entry.relative_to(root).parts[:-1]:
        here = here / part
        if here.is_symlink():
            return here
    return None


def quarantine(data_dir: str | Path, entry: Path) -> Path:
    """Move `entry` (a run folder, a stray or a link under runs/) to `data/quarantine/`, same relative
    path, never overwriting: nothing is deleted, and the next collect re-runs a moved run. A link is
    moved as itself (rename never follows it); an entry reached through a link is refused, since
    moving it would move what the link points at, which may lie outside the store."""
    root = runs_root(data_dir)
    rel = entry.relative_to(root)
    link = _links_under(root, entry) or _links_under(Path(data_dir), Path(data_dir) / QUARANTINE_DIR / rel)
    if root.is_symlink() or link is not None:
        raise OSError(f"{link or root} is a symbolic link; move that link itself, nothing reached through it")
    target = Path(data_dir) / QUARANTINE_DIR / rel
    n = 1
    while os.path.lexists(target):
        target = Path(data_dir) / QUARANTINE_DIR / rel.parent / f"{rel.name}.{n}"
        n += 1
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(entry, target)
    return target


_RENAME_EXCHANGE, _AT_FDCWD = 2, -100


def _remove(path: Path) -> None:
    """Remove a folder we wrote or swapped out; a link is unlinked, never followed."""
    if path.is_symlink() or not path.is_dir():
        path.unlink()
    else:
        shutil.rmtree(path)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2); False where the kernel or file system cannot."""
    fn = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


class RunFolder:
    """The folder of one run, written by one process under the run's claim. Call `start`, then
    `write` per table, `finish` last; the stored run (if any) stays as it was until `finish`."""

    def __init__(self, data_dir: str | Path, sweep: str, run_id: str):
        from gclab.store.claim import Claim  # claim.py locates its file with run_dir

        self.path = run_dir(data_dir, sweep, run_id)
        self.run_id = run_id
        self.stage = self.path.with_name(f".{self.path.name}.new")
        self.parked = self.path.with_name(f".{self.path.name}.old")
        self.claim = Claim(data_dir, sweep, run_id)

    def start(self) -> None:
        """Claim the run (ClaimTaken if another process writes it) and open an empty private folder."""
        self.claim.require(f"run {self.run_id}")
        # Under the claim, leftovers are a killed writer's: its unpublished folder, or the old run
        # it had parked between two renames, which goes back where it was.
        if os.path.lexists(self.parked):
            if os.path.lexists(self.path):
                _remove(self.parked)
            else:
                os.replace(self.parked, self.path)
        if os.path.lexists(self.stage):
            _remove(self.stage)
        self.stage.mkdir(parents=True)

    def write(self, table: str, columns: Mapping[str, Any] | pa.Table) -> None:
        if table == MARKER_TABLE:
            raise ValueError("write the runs row with finish(), which goes last")
        write_atomic(to_arrow(table, columns), self.stage / FILE_NAMES[table])

    def finish(self, run_row: Mapping[str, Any]) -> None:
        """Write run.parquet, then publish the run in one step and release the claim."""
        try:
            write_atomic(
                to_arrow(MARKER_TABLE, {k: [v] for k, v in run_row.items()}), self.stage / FILE_NAMES[MARKER_TABLE]
            )
            if not os.path.lexists(self.path):
                os.rename(self.stage, self.path)
            elif _exchange(self.stage, self.path):
                _remove(self.stage)  # now the replaced run
            else:
                os.rename(self.path, self.parked)
                os.rename(self.stage, self.path)
                _remove(self.parked)
        finally:
            self.claim.release()

    def abandon(self) -> None:
        """Drop what was written; the stored run stays as it was."""
        try:
            shutil.rmtree(self.stage, ignore_errors=True)
        finally:
            self.claim.release()

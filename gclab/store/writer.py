"""The writer of one run, wherever its store lives: `run_writer` picks it from `--data`.

On local disk it is `layout.RunFolder` (a run folder in the inbox, published by one rename). A bucket
has no atomic rename, so `StagedRun` writes the run's files into a private local temporary folder
and `finish` commits them to the store's Delta table in one commit (`table.commit_runs`): a killed
writer has committed nothing, and its lease (`store.lease`, the claim) expires (README,
"Object storage").
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from gclab.store.claim import ClaimTaken
from gclab.store.layout import RunFolder, to_arrow, write_atomic
from gclab.store.lease import Lease
from gclab.store.location import Location, parse
from gclab.store.schema import FILE_NAMES, MARKER_TABLE


class StagedRun:
    """One run bound for an object store: `start`, `write` per table, `finish` last (RunFolder's interface)."""

    def __init__(self, location: Location, sweep: str, run_id: str):
        self.location, self.sweep, self.run_id = location, sweep, run_id
        self.claim = Lease(location, sweep, run_id)
        self._tmp: Path | None = None

    @property
    def stage(self) -> Path:
        if self._tmp is None:
            raise RuntimeError(f"run {self.run_id}: call start() before writing")
        # The folder layout commit_runs reads, as in the local inbox.
        return self._tmp / f"sweep={self.sweep}" / f"run_id={self.run_id}"

    @property
    def staging_prefix(self) -> str:
        """Name prefix of this run's local folders, for this store only (the same run may go to two stores)."""
        store = hashlib.sha256(self.location.uri.encode()).hexdigest()[:8]
        return f"gclab-{store}-{self.run_id}-"

    def start(self) -> None:
        """Take the run's lease (ClaimTaken if another process writes it) and open an empty local folder."""
        self.claim.require(f"run {self.run_id}")
        # Under the lease, this machine's other folders of the run are killed writers' leftovers.
        for leftover in Path(tempfile.gettempdir()).glob(f"{self.staging_prefix}*"):
            shutil.rmtree(leftover, ignore_errors=True)
        self._tmp = Path(tempfile.mkdtemp(prefix=self.staging_prefix))
        self.stage.mkdir(parents=True)

    def write(self, table: str, columns: Mapping[str, Any] | pa.Table) -> None:
        if table == MARKER_TABLE:
            raise ValueError("write the runs row with finish(), which goes last")
        write_atomic(to_arrow(table, columns), self.stage / FILE_NAMES[table])

    def finish(self, run_row: Mapping[str, Any]) -> None:
        """Write the runs row, then commit the whole run in one Delta commit and release the lease."""
        from gclab.store.table import commit_runs  # deltalake: only when a run is committed

        try:
            marker = to_arrow(MARKER_TABLE, {k: [v] for k, v in run_row.items()})
            write_atomic(marker, self.stage / FILE_NAMES[MARKER_TABLE])
            if not self.claim.confirm():
                raise ClaimTaken(
                    f"run {self.run_id}: this process stalled past its lease and another writer took the run; "
                    "nothing was committed, its run is the one stored"
                )
            commit_runs(location=self.location, run_dirs=[self.stage])
        finally:
            self._cleanup()

    def abandon(self) -> None:
        """Drop what was written; nothing was committed."""
        self._cleanup()

    def _cleanup(self) -> None:
        try:
            if self._tmp is not None:
                shutil.rmtree(self._tmp, ignore_errors=True)
                self._tmp = None
        finally:
            self.claim.release()


def run_writer(data: str | Path | Location, sweep: str, run_id: str) -> RunFolder | StagedRun:
    """The writer of run `run_id` for the store `data` (a folder, or a URI such as s3://bucket/prefix)."""
    location = data if isinstance(data, Location) else parse(data)
    if location.local is not None:
        return RunFolder(location.local, sweep, run_id)
    return StagedRun(location, sweep, run_id)

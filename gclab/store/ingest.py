"""Move runs from the inbox (the run folders of `store.layout`) into the Delta table, and keep it compact.

Per batch of inbox runs: take each run's claim without waiting (a run being written is skipped),
verify it under the claim (`store.check`: corrupt runs, strays and copies are never ingested and stay
reported), commit the batch in one Delta commit (`store.table.commit_runs`), read its row counts back,
and only then take the folders out of the inbox: renamed to a dot-prefixed name (which no read lists)
and removed, or moved under `DATA/migrated/`. A kill after the commit leaves folders identical to the
committed runs; the views read a run from the inbox when it is there (inbox wins), and the next
ingest replaces the committed copy, so nothing is lost or doubled (docs/SCHEMA.md).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from gclab.store.check import RUN_DIR, SWEEP_DIR, VerdictCache, inventory, run_state
from gclab.store.claim import Claim
from gclab.store.errors import StoreError
from gclab.store.layout import runs_root
from gclab.store.location import Location
from gclab.store.schema import FILE_NAMES
from gclab.store.table import commit_runs, open_table, row_counts, table_files

# Collect ingests its inbox once it holds this many runs: a few hundred runs per commit keeps both
# the files a read opens (six per inbox run) and the commits per run small; below it a store stays as
# folders, whose reads cost what they did before the table existed.
COMPACT_AT = 256
# One Delta commit holds at most BATCH runs and BATCH_BYTES of their Parquet files (the first run always
# fits): this bounds one commit's memory whatever a run's length, e.g. ~1,000 runs of 1,000 steps fit.
BATCH = 256
BATCH_BYTES = 64 * 2**20
# Compaction bin-packs only files below this size, so a file that reached it is never rewritten again:
# compacting N new runs rewrites at most one partly filled file per partition, whatever the table holds
# (delta-rs's default, 100 MB, would rewrite every file of a table under 700 MB at each compaction).
TARGET_FILE_BYTES = 32 * 2**20
MIGRATED_DIR = "migrated"
GONE = ".ingested"  # suffix of a folder committed and on its way out of the inbox


def inbox_size(*, data_dir: Path) -> int:
    """Run folders with a run.parquet in the inbox (no file is read)."""
    root = runs_root(data_dir)
    if not root.is_dir():
        return 0
    return sum(1 for _ in root.glob(f"sweep=*/run_id=*/{FILE_NAMES['runs']}"))


def _sweep_and_id(folder: Path) -> tuple[str, str] | None:
    s, r = SWEEP_DIR.fullmatch(folder.parent.name), RUN_DIR.fullmatch(folder.name)
    return (s.group(1), r.group(1)) if s and r else None


def _drop(folder: Path) -> None:
    """Take a committed folder out of the inbox in one rename, then remove it (a kill mid-removal
    leaves only a dot-prefixed folder no read lists, removed by the next ingest)."""
    gone = folder.with_name(f".{folder.name}{GONE}")
    os.replace(folder, gone)
    shutil.rmtree(gone)


def _mover(data_dir: Path) -> Callable[[Path], None]:
    def move(folder: Path) -> None:
        target = data_dir / MIGRATED_DIR / folder.relative_to(data_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():  # migrated before, then re-recorded: keep both
            target = target.with_name(f"{target.name}.{len(list(target.parent.glob(target.name + '*')))}")
        os.replace(folder, target)

    return move


def _claim_batch(data_dir: Path, folders: list[Path]) -> tuple[list[Path], list[Claim]]:
    """The folders whose claim we got and that still verify under it; the claims held."""
    ok, claims = [], []
    cache = VerdictCache(data_dir)
    for folder in folders:
        ids = _sweep_and_id(folder)
        if ids is None:
            continue
        claim = Claim(data_dir, *ids)
        if not claim.acquire():
            continue
        status, problems = run_state(data_dir, *ids, cache=cache)
        if status is None or problems:  # replaced or broken since the inventory: leave it to check
            claim.release()
            continue
        ok.append(folder)
        claims.append(claim)
    return ok, claims


def _verify_committed(location: Location, folders: list[Path], old: dict[str, list[str]]) -> None:
    """Every table's row count per run, read back from the files the commit added (the table's files
    not in `old`), equals the folder's."""
    import pyarrow.parquet as pq

    ids = [f.name.split("=", 1)[1] for f in folders]
    new = {t: sorted(set(paths) - set(old.get(t, []))) for t, paths in table_files(location=location).items()}
    got = row_counts(location=location, run_ids=ids, files=new)
    for folder, run_id in zip(folders, ids):
        for table, name in FILE_NAMES.items():
            path = folder / name
            want = pq.ParquetFile(path).metadata.num_rows if path.exists() else 0
            if got.get((table, run_id), 0) != want:
                raise StoreError(
                    f"run {run_id}: {table} holds {got.get((table, run_id), 0)} rows in the table, {want} in "
                    f"{folder}; the folder is kept, run `gclab compact` again"
                )


def _batches(folders: list[Path]) -> list[list[Path]]:
    """`folders` cut into commits of at most BATCH runs and BATCH_BYTES of files."""
    out: list[list[Path]] = [[]]
    held = 0
    for folder in folders:
        size = sum(e.stat().st_size for e in os.scandir(folder) if e.is_file(follow_symlinks=False))
        if out[-1] and (len(out[-1]) >= BATCH or held + size > BATCH_BYTES):
            out.append([])
            held = 0
        out[-1].append(folder)
        held += size
    return [b for b in out if b]


def _sweep_leftovers(data_dir: Path) -> None:
    for gone in runs_root(data_dir).glob(f"sweep=*/.run_id=*{GONE}"):
        shutil.rmtree(gone, ignore_errors=True)


def ingest(*, location: Location, after: Callable[[Path], None] | None = None, say=print) -> list[str]:
    """Commit every sound, unclaimed inbox run to the table in batches; `after` takes each committed
    folder out of the inbox (default: remove it). Returns the run_ids committed."""
    if location.local is None:
        raise StoreError(f"--data {location}: an object store has no inbox to ingest; run this on a local store")
    data_dir = location.local
    after = after or _drop
    _sweep_leftovers(data_dir)
    folders = list(inventory(data_dir).runs.values())
    done: list[str] = []
    for group in _batches(folders):
        batch, claims = _claim_batch(data_dir, group)
        try:
            if not batch:
                continue
            old = table_files(location=location)
            done += commit_runs(location=location, run_dirs=batch)
            _verify_committed(location, batch, old)
            for folder in batch:
                after(folder)
        finally:
            for claim in claims:
                claim.release()
        say(f"committed {len(done)} of {len(folders)} inbox runs")
    return done


def compact(*, location: Location, say=print) -> dict:
    """Ingest the inbox, then bin-pack each partition's small files, checkpoint the log, and remove
    files and log entries older than Delta's default retention (never a young file)."""
    runs = ingest(location=location, say=say) if location.is_local else []  # a bucket has no inbox
    dt = open_table(location=location)
    if dt is None:
        return {"ingested": len(runs)}
    metrics = dt.optimize.compact(target_size=TARGET_FILE_BYTES)
    dt.create_checkpoint()
    removed = dt.vacuum(dry_run=False)
    dt.cleanup_metadata()
    return {
        "ingested": len(runs),
        "files_added": metrics.get("numFilesAdded", 0),
        "files_removed": metrics.get("numFilesRemoved", 0),
        "vacuumed": len(removed),
    }


def migrate(*, location: Location, say=print) -> list[str]:
    """Commit every inbox run, moving each committed folder under `DATA/migrated/` (kept until the
    user removes them; no view reads them)."""
    if location.local is None:
        raise StoreError(f"--data {location}: migrate converts a local folder store; point --data at one")
    return ingest(location=location, after=_mover(location.local), say=say)

"""Which folders under `data/runs/` are runs, and which files of them can be trusted.

A run is exactly `sweep=<s>/run_id=<id>/` holding a `run.parquet` whose one row names the same
sweep and run_id, and every table file of it reads in full: footer, metadata, every data page
(page checksums verified where the writer stored them) and the `run_id` column equal to the
folder's. Everything else under `runs/` (backups such as `run_id=X.bak`, copies under another
sweep, strays, symbolic links, files that fail to read) is a problem: left out of the views with a warning and
listed by `gclab check` (docs/SCHEMA.md describes the layout). A folder without
`run.parquet` is an incomplete run (killed, or being written) and is simply invisible. A symbolic link
is never followed: it is itself the entry reported (and what `--repair` moves), whatever it
points at, so nothing outside the entry judged, or outside the store, is read as a run or moved.

Verifying a file reads it whole, so each file's verdict is cached in `data/.verified.json`,
keyed by inode, size and ctime (which nothing but a change to the file can set).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gclab.store.errors import one_line
from gclab.store.layout import runs_root
from gclab.store.schema import FILE_NAMES, MARKER_TABLE, RENAMED, SCHEMAS

CACHE_FILE = ".verified.json"
CACHE_VERSION = 1
# Matched with fullmatch: `$` would also match before a final newline.
SWEEP_DIR = re.compile(r"sweep=([A-Za-z0-9_.-]+)")
RUN_DIR = re.compile(r"run_id=([A-Za-z0-9_-]+)")
TABLE_OF_FILE = {name: table for table, name in FILE_NAMES.items()}


@dataclass(frozen=True)
class Problem:
    path: Path
    kind: str  # unreadable | not a run | run_id mismatch | schema drift
    detail: str

    def line(self) -> str:
        return f"{self.path}: {self.kind}: {self.detail}"


@dataclass
class Inventory:
    """The trusted runs (run_id → folder), their files per table, and every problem found."""

    runs: dict[str, Path] = field(default_factory=dict)
    status: dict[str, str | None] = field(default_factory=dict)
    files: dict[str, list[Path]] = field(default_factory=lambda: {t: [] for t in FILE_NAMES})
    problems: list[Problem] = field(default_factory=list)  # left out of the views
    drift: list[Problem] = field(default_factory=list)  # served, but columns are missing

    def bad_entries(self, root: Path) -> list[Path]:
        """The run folders (or stray entries) under `root` that the problems are in, for quarantine."""
        out: list[Path] = []
        for p in self.problems + self.drift:
            parts = p.path.relative_to(root).parts
            if parts and (entry := root.joinpath(*parts[:2])) not in out:
                out.append(entry)
        return out


def _verify_file(path: Path, table: str, run_id: str) -> dict:
    """Read the file whole; return {"error"} or {"missing", "retyped", "row"} (row: runs only)."""
    try:
        with pq.ParquetFile(path, page_checksum_verification=True) as f:  # a file, never a dataset folder
            data = f.read()
    except (OSError, pa.ArrowException, ValueError) as exc:  # thrift/footer/page errors
        return {"error": one_line(exc, with_type=True)}
    want = SCHEMAS[table]
    old_name = {new: old for old, new in RENAMED.get(table, {}).items()}
    # Each wanted column as the file names it: its name, or the name it had before a rename.
    present = (tuple(n for n in (f.name, old_name.get(f.name)) if n in data.schema.names) for f in want)
    stored = {f.name: names[0] for f, names in zip(want, present) if names}
    missing = [f.name for f in want if f.name not in stored]
    retyped = [
        f"{stored[f.name]} is {data.schema.field(stored[f.name]).type}, not {f.type}"
        for f in want
        if f.name in stored and data.schema.field(stored[f.name]).type != f.type
    ]
    out = {"missing": missing, "retyped": retyped}
    if "run_id" in data.schema.names and data.num_rows:
        ids = pc.unique(data.column("run_id")).to_pylist()
        if ids != [run_id]:
            out["mismatch"] = f"its run_id column holds {ids[:3]}, not the folder's {run_id!r}"
    if table == MARKER_TABLE:
        if data.num_rows != 1 or "sweep" not in data.schema.names:
            return {"error": f"run.parquet must hold one row with run_id and sweep, it holds {data.num_rows}"}
        out["sweep"] = data.column("sweep")[0].as_py()
        out["status"] = data.column("status")[0].as_py() if "status" in data.schema.names else None
    return out


class VerdictCache:
    """File verdicts keyed by (inode, size, ctime_ns); saved atomically, best effort."""

    def __init__(self, data_dir: Path):
        self.path = data_dir / CACHE_FILE
        self.entries: dict[str, list] = {}
        self.dirty = False
        try:
            raw = json.loads(self.path.read_text())
            if raw.get("version") == CACHE_VERSION:
                self.entries = raw["files"]
        except (OSError, ValueError, KeyError, AttributeError):
            pass

    def verdict(self, path: Path, table: str, run_id: str) -> dict:
        try:
            st = path.stat()
        except OSError as exc:
            return {"error": one_line(exc, with_type=True)}
        key = [st.st_ino, st.st_size, st.st_ctime_ns, st.st_mtime_ns]
        hit = self.entries.get(str(path))
        if hit and hit[0] == key:
            return hit[1]
        result = _verify_file(path, table, run_id)
        self.entries[str(path)] = [key, result]
        self.dirty = True
        return result

    def save(self, seen: set[str]) -> None:
        stale = set(self.entries) - seen
        if not self.dirty and not stale:
            return
        for k in stale:
            del self.entries[k]
        tmp = self.path.with_name(f".{CACHE_FILE}.tmp-{os.getpid()}")
        try:
            tmp.write_text(json.dumps({"version": CACHE_VERSION, "files": self.entries}))
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)  # a read-only store: verify again next time


def _entries(folder: Path) -> tuple[list[Path], OSError | None]:
    try:
        return sorted(p for p in folder.iterdir() if not p.name.startswith(".")), None
    except OSError as exc:
        return [], exc


# C901 kept: one verdict per file of a run folder, in one pass (each branch is one failure a user can meet)
def _check_run(folder: Path, sweep: str, run_id: str, cache: VerdictCache, inv: Inventory, seen: set[str]) -> None:  # noqa: C901
    entries, err = _entries(folder)
    if err:
        inv.problems.append(Problem(folder, "unreadable", one_line(err, with_type=True)))
        return
    names = {p.name for p in entries}
    if FILE_NAMES[MARKER_TABLE] not in names:
        return  # incomplete: killed or being written
    run_problems: list[Problem] = []
    drift: list[Problem] = []
    found: dict[str, Path] = {}
    status = None
    for p in entries:
        table = TABLE_OF_FILE.get(p.name)
        if p.is_symlink():
            run_problems.append(Problem(p, "not a run", _link_detail(p)))
            continue
        if table is None:
            run_problems.append(Problem(p, "not a run", "unexpected entry in a run folder"))
            continue
        seen.add(str(p))
        v = cache.verdict(p, table, run_id)
        if "error" in v:
            run_problems.append(Problem(p, "unreadable", v["error"]))
        elif "mismatch" in v:
            run_problems.append(Problem(p, "run_id mismatch", v["mismatch"]))
        elif v["retyped"]:
            run_problems.append(Problem(p, "schema drift", "; ".join(v["retyped"])))
        else:
            if v["missing"]:
                drift.append(Problem(p, "schema drift", "lacks " + ", ".join(v["missing"])))
            if table == MARKER_TABLE and v["sweep"] != sweep:
                run_problems.append(
                    Problem(
                        folder,
                        "run_id mismatch",
                        f"run.parquet belongs to sweep {v['sweep']!r}: a copy, not a run of this sweep",
                    )
                )
            found[table] = p
            if table == MARKER_TABLE:
                status = v["status"]
    if run_problems:
        inv.problems += run_problems
        return
    if run_id in inv.runs:
        inv.problems.append(Problem(folder, "run_id mismatch", f"duplicate of {inv.runs[run_id]}"))
        return
    inv.runs[run_id] = folder
    inv.status[run_id] = status
    inv.drift += drift
    for table, p in found.items():
        inv.files[table].append(p)


def _link_detail(path: Path) -> str:
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    return f"a symbolic link (to {target}); links are never followed: remove it, or repair moves the link itself"


def _marker_run_id(folder: Path) -> str | None:
    try:
        return pq.read_table(folder / FILE_NAMES[MARKER_TABLE], columns=["run_id"]).column(0)[0].as_py()
    except (OSError, pa.ArrowException, ValueError, IndexError, KeyError):
        return None


def inventory(data_dir: str | Path) -> Inventory:
    """Walk `runs/`: trusted runs and their files, and every problem, in path order."""
    data_dir = Path(data_dir)
    root = runs_root(data_dir)
    inv = Inventory()
    if not root.exists():
        return inv
    cache = VerdictCache(data_dir)
    seen: set[str] = set()
    sweeps, err = _entries(root)
    if err:
        inv.problems.append(Problem(root, "unreadable", one_line(err, with_type=True)))
    for sdir in sweeps:
        s = SWEEP_DIR.fullmatch(sdir.name)
        if sdir.is_symlink():
            inv.problems.append(Problem(sdir, "not a run", _link_detail(sdir)))
            continue
        if not s or not sdir.is_dir():
            inv.problems.append(Problem(sdir, "not a run", "expected sweep=<name>/ folders only"))
            continue
        _inventory_sweep(sdir, s.group(1), cache, inv, seen)
    cache.save(seen)
    return inv


def _inventory_sweep(sdir: Path, sweep: str, cache, inv: Inventory, seen: set[str]) -> None:
    """One `sweep=<name>/` folder: its runs checked, every other entry (links included) a problem."""
    runs, err = _entries(sdir)
    if err:
        inv.problems.append(Problem(sdir, "unreadable", one_line(err, with_type=True)))
    for rdir in runs:
        r = RUN_DIR.fullmatch(rdir.name)
        if rdir.is_symlink():
            inv.problems.append(Problem(rdir, "not a run", _link_detail(rdir)))
        elif r and rdir.is_dir():
            _check_run(rdir, sweep, r.group(1), cache, inv, seen)
        elif rdir.is_dir() and (rdir / FILE_NAMES[MARKER_TABLE]).exists():
            inner = _marker_run_id(rdir)
            inv.problems.append(
                Problem(
                    rdir, "run_id mismatch", f"folder name does not match its run.parquet run_id {inner!r} (a backup?)"
                )
            )
        else:
            inv.problems.append(Problem(rdir, "not a run", "expected run_id=<id>/ folders only"))


def run_state(
    data_dir: str | Path, sweep: str, run_id: str, cache: VerdictCache | None = None
) -> tuple[str | None, list[Problem]]:
    """(status, problems) of one run folder: status None when absent, incomplete or bad. `cache`:
    the verdicts of a caller checking many runs (loaded once)."""
    folder = runs_root(data_dir) / f"sweep={sweep}" / f"run_id={run_id}"
    inv = Inventory()
    if folder.is_symlink() or folder.parent.is_symlink():
        inv.problems.append(Problem(folder, "not a run", _link_detail(folder)))
    elif folder.is_dir():
        _check_run(folder, sweep, run_id, cache or VerdictCache(Path(data_dir)), inv, set())
    return inv.status.get(run_id), inv.problems


def warning_lines(inv: Inventory, limit: int = 10) -> list[str]:
    """One line per left-out item (at most `limit`), one line for all schema drift."""
    lines = [f"left out {p.line()}" for p in inv.problems[:limit]]
    if len(inv.problems) > limit:
        lines.append(f"left out {len(inv.problems) - limit} more problems")
    if inv.problems:
        lines[-1] += "; `make check` lists them, `make check REPAIR=1` quarantines them"
    if inv.drift:
        cols = sorted({f"{p.path.name}: {p.detail}" for p in inv.drift})
        lines.append(
            f"schema drift in {len({p.path.parent for p in inv.drift})} runs ({'; '.join(cols)[:300]}): "
            "their rows are null there and analyses needing those columns use fewer runs; `make check` lists them"
        )
    return lines

"""`gclab check [--repair] [--data DIR]` — verify every run folder of a store;
`gclab compact` / `gclab migrate` — move the inbox's runs into the store's Delta table (docs/SCHEMA.md).

Reads every file of every complete run whole (footer, metadata, data pages, schema against
gclab/store/schema.py, run_id consistency) and prints a table of problems; exit code 1 when there
are any, 0 when the store is sound. `--repair` moves each bad run folder (or stray entry, or
symbolic link: the link itself, never what it points at) to `data/quarantine/`, never deleting
anything and never touching a path outside the store, so the next `make collect` runs it again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

from gclab.store.check import RUN_DIR, SWEEP_DIR, inventory
from gclab.store.claim import Claim
from gclab.store.errors import StoreError
from gclab.store.layout import quarantine, runs_root
from gclab.store.location import parse


def _repair(data_dir: Path, inv) -> int:
    """Quarantine every bad entry; a run a collector is writing right now is left alone."""
    root = runs_root(data_dir)
    skipped = 0
    for entry in inv.bad_entries(root):
        rel = entry.relative_to(root).parts
        s, r = (SWEEP_DIR.fullmatch(rel[0]), RUN_DIR.fullmatch(rel[1])) if len(rel) == 2 else (None, None)
        claim = Claim(data_dir, s.group(1), r.group(1)) if s and r else None
        if claim and not claim.acquire():
            print(f"skipped {entry}: a collector ({claim.holder()}) holds it; run check again when it is done")
            skipped += 1
            continue
        try:
            print(f"moved {entry} -> {quarantine(data_dir, entry)}")
        except OSError as exc:
            print(f"could not move {entry}: {exc}")
            skipped += 1
        finally:
            if claim:
                claim.release()
    return skipped


def _table_command(command: str, data_dir: str | Path) -> int:
    """`compact` or `migrate`: one line per batch committed, one summary line."""
    from gclab.store.ingest import compact, migrate

    location = parse(data_dir)
    try:
        if command == "migrate":
            runs = migrate(location=location)
            print(f"{data_dir}: {len(runs)} runs in the table; their folders are in {Path(data_dir) / 'migrated'}")
        else:
            out = compact(location=location)
            print(f"{data_dir}: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in out.items()))
    except (StoreError, OSError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    return 0


def _remote(args) -> int:
    """check / compact on object storage: the table only (no inbox, nothing to quarantine)."""
    from gclab.store.remote import require_store, verify

    try:
        location = parse(args.data)
        require_store(location)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "migrate":
        print(f"error: --data {args.data}: migrate converts a local folder store; point --data at one", file=sys.stderr)
        return 2
    if args.command == "compact":
        return _table_command("compact", args.data)
    runs, problems = verify(location)
    print(f"{args.data}: {runs} runs committed, every table file read whole, {len(problems)} problems")
    for line in problems:
        print(line)
    if problems and args.repair:
        print("nothing moved: a committed file is never moved on object storage; restore it from the bucket")
    return 1 if problems else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="gclab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="verify every run folder; exit 1 if any is bad")
    check.add_argument("--data", default="data", help="run store folder (default ./data)")
    check.add_argument("--repair", action="store_true", help="move bad runs to <data>/quarantine/ (never deletes)")
    for name, help_ in (
        ("compact", "commit the inbox's runs to the table, then compact and checkpoint it"),
        ("migrate", "commit every run folder to the table, moving the folders to <data>/migrated/"),
    ):
        sub.add_parser(name, help=help_).add_argument("--data", default="data", help="run store folder")
    args = p.parse_args(argv)
    if not parse(args.data).is_local:
        return _remote(args)
    data_dir = Path(args.data)
    if not data_dir.is_dir():
        print(
            f"error: --data {data_dir} is not a folder; point --data at the store folder (default ./data)",
            file=sys.stderr,
        )
        return 2
    if args.command != "check":
        return _table_command(args.command, data_dir)
    return _check(data_dir, repair=args.repair)


def _check(data_dir: Path, *, repair: bool) -> int:
    """The inbox's folders and the table's files, verified; bad ones quarantined with `repair`."""
    from gclab.store.location import parse
    from gclab.store.table import stored_runs
    from gclab.store.table_check import repair_table, verify_table

    location = parse(data_dir)
    inv = inventory(data_dir)
    bad_files = verify_table(location=location)
    problems = inv.problems + inv.drift + [b.problem for b in bad_files]
    runs = set(inv.runs) | (set() if bad_files else set(stored_runs(location=location).column("run_id").to_pylist()))
    print(f"{data_dir}: {len(runs)} runs verified, {len(problems)} problems")
    if not problems:
        return 0
    table = pl.DataFrame(
        {
            "path": [str(x.path.relative_to(data_dir)) for x in problems],
            "problem": [x.kind for x in problems],
            "detail": [x.detail for x in problems],
        }
    )
    with pl.Config(tbl_rows=-1, fmt_str_lengths=160, tbl_width_chars=240, tbl_hide_dataframe_shape=True):
        print(table)
    if not repair:
        print(
            "run `make check REPAIR=1` (gclab check --repair) to move them to "
            f"{data_dir / 'quarantine'}; the next collect re-runs them"
        )
        return 1
    repair_table(location=location, bad=bad_files)
    return 1 if _repair(data_dir, inv) else 0


if __name__ == "__main__":
    sys.exit(main())

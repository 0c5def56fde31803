"""`gclab collect --sweep NAME|PATH` — train a sweep's runs into the run store."""

from __future__ import annotations

import argparse
import sys
import time

from gclab.collect.sweep import MAX_RUNS, ConfigError, expand, load_sweep, parse_overrides, shipped_sweeps
from gclab.store.errors import StoreError
from gclab.store.location import parse
from gclab.store.schema import RUN_STATUSES
from gclab.store.sweeps import DEMO, PAPER_SWEEPS, SHIPPED_SWEEPS

# `make paper` runs these CPU-scale sweeps.


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="gclab collect", description=__doc__)
    p.add_argument(
        "--sweep",
        default=DEMO,
        help=f"shipped sweep ({', '.join(shipped_sweeps())}) or a .toml path; "
        "demo = the demo's sweeps at their demo scale",
    )
    p.add_argument("--paper", action="store_true", help="run every CPU-scale paper sweep")
    p.add_argument(
        "--scale",
        default="cpu",
        help="cpu (default), paper (the paper's sizes; for GPUs) or demo "
        "(the sweep's [demo] section: fewer widths, seeds and steps)",
    )
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config fields, e.g. steps=2000")
    p.add_argument("--data", default="data", help="run store folder (default ./data)")
    p.add_argument("--backend", default="local", choices=("local", "ray"))
    p.add_argument("--workers", type=int, default=None, help="local processes (default: one per core)")
    p.add_argument("--list", action="store_true", help="list the runs and exit")
    p.add_argument(
        "--allow-huge",
        action="store_true",
        help=f"allow more than {MAX_RUNS:,} runs and models or data beyond the size bounds",
    )
    args = p.parse_args(argv)
    from gclab.collect.runner import CLAIMED, DONE_ELSEWHERE, TOO_DEEP, check_workers, run_sweep

    try:
        from gclab.collect.preflight import preflight

        check_workers(args.workers)
        location = parse(args.data)
        try:
            overrides = parse_overrides(args.set)
            paper = SHIPPED_SWEEPS if args.scale == "paper" else PAPER_SWEEPS  # [paper]-only sweeps at that scale
            names, scale = (paper, args.scale) if args.paper else expand([args.sweep], args.scale)
            sweeps = [load_sweep(n, scale=scale, overrides=overrides, allow_huge=args.allow_huge) for n in names]
        except RecursionError:
            raise ConfigError(TOO_DEEP) from None
        preflight(sweeps, args.data, allow_huge=args.allow_huge)
        if not location.is_local:
            from gclab.store.lease import require_bucket

            require_bucket(location)
    except (ConfigError, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.list:
        for s in sweeps:
            for c in s.runs:
                print(s.name, c.run_id, c.model_dump_json(exclude_defaults=True))
        return 0
    t0 = time.perf_counter()
    rows = [
        r
        for s in sweeps
        for r in run_sweep(s.runs, args.data, backend=args.backend, workers=args.workers, label=s.name)
    ]
    counts = {st: sum(r.get("status") == st for r in rows) for st in RUN_STATUSES}
    trained = sum(counts.values())
    print(
        f"collected {trained} runs in {time.perf_counter() - t0:.1f} s: "
        + ", ".join(f"{n} {st}" for st, n in counts.items())
        + f"; store: {args.data}"
        + ("/runs" if location.is_local else "")
    )
    elsewhere = [r for r in rows if r.get("status") in (CLAIMED, DONE_ELSEWHERE)]
    if elsewhere:
        busy = [r["holder"] for r in elsewhere if r["status"] == CLAIMED]
        print(
            f"{len(elsewhere)} runs were trained by another collector sharing this store"
            + (f" ({len(busy)} still running, e.g. by {busy[0]}; collect again when it is done)" if busy else "")
        )
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())

"""`make bench`: every speed figure (docs/METRICS.md, "Measuring"), measured here, into reports/bench.json."""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import platform
import sys
import time
from pathlib import Path

SECTIONS = ("metrics", "peers", "collect", "report", "store")  # store: the 1k case (make bench-store: all)


def machine() -> dict:
    import torch

    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else platform.processor()
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cuda": torch.cuda.is_available(),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="gclab bench", description=__doc__)
    p.add_argument(
        "--out", default="reports", help="folder for bench.json (benches build their own stores in a temp folder)"
    )
    p.add_argument("--only", nargs="*", choices=SECTIONS, default=list(SECTIONS))
    p.add_argument(
        "--quick",
        action="store_true",
        help="3 short rounds per measurement (metrics, peers): checks the whole path in minutes; figures are rough",
    )
    p.add_argument("--nets", nargs="*", metavar="NET", help="catalogue nets for the peers section (default: all)")
    args = p.parse_args(argv)
    from gclab.bench.nets import NETS

    unknown = sorted(set(args.nets or ()) - set(NETS))
    if unknown:
        p.exit(2, f"error: unknown bench nets {unknown}; use some of: {', '.join(NETS)}\n")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "bench.json"
    result = json.loads(path.read_text()) if path.exists() else {}
    result["machine"] = machine()
    for name in args.only:
        t0 = time.perf_counter()
        print(f"bench {name} ...", file=sys.stderr, flush=True)
        run = importlib.import_module(f"gclab.bench.{name}").run
        wanted = {"quick": args.quick, "nets": tuple(args.nets) if args.nets else None}
        accepted = inspect.signature(run).parameters
        result[name] = run(**{k: v for k, v in wanted.items() if k in accepted})
        result[name]["bench_wall_s"] = round(time.perf_counter() - t0, 1)
        path.write_text(json.dumps(result, indent=2, default=float))  # keep what is done so far
    print(json.dumps(result, indent=2, default=float))
    print(f"bench: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

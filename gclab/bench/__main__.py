"""`make bench`: every speed figure (docs/METRICS.md, "Measuring"), measured here, into reports/bench.json."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

SECTIONS = ("metrics", "peers", "collect", "report")


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
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "bench.json"
    result = json.loads(path.read_text()) if path.exists() else {}
    result["machine"] = machine()
    for name in args.only:
        t0 = time.perf_counter()
        print(f"bench {name} ...", file=sys.stderr, flush=True)
        result[name] = importlib.import_module(f"gclab.bench.{name}").run()
        result[name]["bench_wall_s"] = round(time.perf_counter() - t0, 1)
        path.write_text(json.dumps(result, indent=2, default=float))  # keep what is done so far
    print(json.dumps(result, indent=2, default=float))
    print(f"bench: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`make bench-store`: what the store costs at 1k, 10k and 100k runs × 1,000 steps → reports/bench_store.json.

Each store is built by the project's own writer: planted runs (`gclab.planted.store.planted_runs`,
every table) made into Arrow frames in memory, `ingest.BATCH` runs at a time
(`gclab.planted.frames`), each batch one Delta commit through `store.table.commit_tables` (what
`commit_runs` commits a batch of run folders with), then `compact`ed (issue 23, docs/SCHEMA.md). Then,
each as a whole process as a user types it: `gclab sql` count(*) cold (first command after the
build) and warm (again), the per-run summary GC_AT_BEST_SQL, `gclab report`, and a 100-run
`gclab collect` of a tiny sweep into that store against the same collect into an empty store.
Targets (issue 23, at 100k on 2 cores): count ≤ 2 s, summary ≤ 5 s, report ≤ 120 s, warm/cold < 2×,
the collect within 20% of the empty store's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = (1_000, 10_000, 100_000)
N_STEPS = 1_000
CADENCE = {"steps": N_STEPS, "log_every": 10, "eval_every": 50}
TARGETS_S = {"count": 2.0, "gc_at_best": 5.0, "report": 120.0}
COLLECT_SLACK = 1.2  # a collect into the big store may take this much longer than into an empty one
# 100 new runs, as small as a run gets: the collect's cost beyond training is what is measured.
TINY_SWEEP = """
description = "bench-store: 100 tiny runs"
seeds = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
[base]
dataset = "digits"
n_train = 64
n_test = 32
width = 8
steps = 2
batch_size = 16
eval_every = 1
log_every = 1
eval_examples = 16
theorem_examples = 0
bfd_batch = 0
sharpness_iters = 0
[grid]
lr = [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.1]
"""


def timed(*args: str) -> tuple[float, subprocess.CompletedProcess]:
    """Wall seconds of `gclab <args>` as a whole process (interpreter start-up included)."""
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "gclab", *args], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if res.returncode not in (0, 1):  # claims/report answer 1 for a failed run; anything else is the bench's bug
        raise RuntimeError(f"gclab {' '.join(args[:2])} exited {res.returncode}: {res.stderr.strip()[-400:]}")
    return wall, res


def build(data: Path, n_runs: int, say=print) -> dict:
    """A store of `n_runs` planted runs committed batch by batch; the append rate counts commits only."""
    from gclab.planted.frames import planted_batches
    from gclab.planted.store import SWEEPS
    from gclab.store.ingest import BATCH, compact
    from gclab.store.location import parse
    from gclab.store.table import commit_tables, table_files

    location = parse(data)
    commit_s, done = 0.0, 0
    t0 = time.perf_counter()
    for tables in planted_batches(batch=BATCH, sweeps=SWEEPS, n_runs=n_runs, cadence=CADENCE):
        t = time.perf_counter()
        done += len(commit_tables(location=location, tables=tables))
        commit_s += time.perf_counter() - t
        say(f"bench store: {done:,} of {n_runs:,} runs committed")
    write_s = time.perf_counter() - t0 - commit_s
    t = time.perf_counter()
    compact(location=location, say=lambda msg: None)
    compact_s = time.perf_counter() - t
    files = [p for p in (data / "delta").rglob("*.parquet") if p.is_file()]
    # The snapshot's files (what a read opens); the folder also keeps the compacted-away ones until Delta's
    # retention (7 days) lets `gclab compact` vacuum them.
    live = [Path(f) for fs in table_files(location=location).values() for f in fs]
    return {
        "runs": n_runs,
        "steps_per_run": N_STEPS,
        "batch_runs": BATCH,
        "planted_generate_s": round(write_s, 1),
        "commit_s": round(commit_s, 1),
        "append_runs_per_s": round(n_runs / commit_s, 1) if commit_s else None,
        "compact_s": round(compact_s, 2),
        "live_files_after_compact": len(live),
        "live_mb_after_compact": round(sum(p.stat().st_size for p in live) / 2**20, 1),
        "files_on_disk_after_compact": len(files),
        "mb_on_disk_after_compact": round(sum(p.stat().st_size for p in files) / 2**20, 1),
    }


def reads(data: Path, out: Path) -> dict:
    from gclab.analysis.run_summary import GC_AT_BEST_SQL

    count = ["sql", "-q", "SELECT count(*) FROM runs", "--data", str(data)]
    empty = data.parent / "empty-store"
    empty.mkdir(exist_ok=True)
    floor, _ = timed("sql", "-q", "SELECT count(*) FROM runs", "--data", str(empty))  # start-up, no runs
    cold, _ = timed(*count)
    warm, _ = timed(*count)
    summary, res = timed("sql", "-q", GC_AT_BEST_SQL, "--data", str(data), "--max-rows", "1")
    report, _ = timed("report", "--data", str(data), "--out", str(out))
    return {
        "count_on_empty_store_s": round(floor, 2),
        "count_cold_s": round(cold, 2),
        "count_warm_s": round(warm, 2),
        "warm_cold_ratio": round(max(cold, warm) / min(cold, warm), 2),
        "gc_at_best_s": round(summary, 2),
        "gc_at_best_answered": "more rows" in res.stdout or "shape" in res.stdout,
        "report_s": round(report, 1),
    }


def collect_100(data: Path, sweep: Path) -> float:
    wall, res = timed("collect", "--sweep", str(sweep), "--data", str(data), "--workers", "2")
    if "collected 100 runs" not in res.stdout:
        raise RuntimeError(f"the 100-run collect did not train 100 runs: {res.stdout.strip()[-300:]}")
    return wall


def one_size(root: Path, n_runs: int, sweep: Path, say=print) -> dict:
    data = root / f"store-{n_runs}"
    say(f"bench store: building {n_runs:,} runs × {N_STEPS:,} steps in {data}")
    out = {"build": build(data, n_runs, say=say)}
    say(f"bench store: timing the read commands on {n_runs:,} runs")
    out["reads"] = reads(data, root / f"report-{n_runs}")
    empty = root / f"empty-{n_runs}"
    out["collect_100_empty_s"] = round(collect_100(empty, sweep), 1)
    out["collect_100_into_store_s"] = round(collect_100(data, sweep), 1)
    shutil.rmtree(empty, ignore_errors=True)
    r = out["reads"]
    out["ok"] = {
        "count": r["count_cold_s"] <= TARGETS_S["count"] and r["count_warm_s"] <= TARGETS_S["count"],
        "gc_at_best": r["gc_at_best_s"] <= TARGETS_S["gc_at_best"],
        "report": r["report_s"] <= TARGETS_S["report"],
        "warm_cold": r["warm_cold_ratio"] < 2.0,
        "collect": out["collect_100_into_store_s"] <= COLLECT_SLACK * out["collect_100_empty_s"],
    }
    shutil.rmtree(data, ignore_errors=True)
    return out


def run(sizes=SIZES[:1], tmp_dir=None, save=lambda result: None) -> dict:
    """The figures for each size in `sizes` (`make bench` runs the 1k case; `make bench-store` all);
    `save` gets the figures so far after each size, so a long run keeps what it measured."""
    from gclab.bench.timing import load_probe

    probe = load_probe()
    root = Path(tempfile.mkdtemp(prefix="gclab-bench-store-", dir=tmp_dir))
    try:
        sweep = root / "tiny100.toml"
        sweep.write_text(TINY_SWEEP)
        result: dict = {"targets_s": TARGETS_S, "collect_slack": COLLECT_SLACK}
        for n in sizes:
            result[str(n)] = one_size(root, n, sweep, say=lambda msg: print(msg, file=sys.stderr, flush=True))
            save({**result, "load": probe()})
        result["load"] = probe()
        return result
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m gclab.bench.store", description=__doc__)
    p.add_argument("--out", default="reports", help="folder for bench_store.json (default ./reports)")
    p.add_argument("--sizes", nargs="*", type=int, default=list(SIZES), help="runs per store (default 1k 10k 100k)")
    p.add_argument("--tmp", default=None, help="where the stores are built (default: the system's temp folder)")
    args = p.parse_args(argv)
    if any(n < 1 for n in args.sizes):
        p.exit(2, "error: --sizes takes whole numbers of runs ≥ 1, e.g. --sizes 1000 10000\n")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "bench_store.json"

    def save(so_far: dict) -> None:
        path.write_text(json.dumps(so_far, indent=2))

    result = run(sizes=tuple(args.sizes), tmp_dir=args.tmp, save=save)
    save(result)
    print(json.dumps(result, indent=2))
    print(f"bench store: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run a sweep: skip what is already stored, run the rest on a local process pool or on Ray.

Completed and diverged runs are final. Missing, incomplete (killed) and failed runs are run
again from the start; a stored run that fails verification (`store.check`) is moved to
`data/quarantine/` and run again. A worker trains a run only while it holds the run's claim
(`store.claim`), and re-checks the store under it, so collectors sharing a store train each
run once and never remove each other's runs. Workers, Ray tasks and the Ray processes a
collector started end when it dies (`collect.lifetime`). On object storage (`--data s3://…`) the
claim is a lease (`store.lease`) and a run is committed to the store's table whole when it ends.
"""

from __future__ import annotations

import os
import sys
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

from tqdm import tqdm

from gclab.collect.config import RunConfig
from gclab.collect.lifetime import exit_with, exit_with_parent, identity, start_reaper
from gclab.collect.sweep import ConfigError
from gclab.store.check import inventory, run_state
from gclab.store.claim import Claim, claim_for
from gclab.store.errors import one_line
from gclab.store.layout import quarantine, run_dir
from gclab.store.location import parse
from gclab.store.schema import RUN_STATUSES
from gclab.store.table import stored_runs

FINAL = tuple(s for s in RUN_STATUSES if s != "failed")  # stored for good; failed runs are run again
# What run_one reports besides a trained run's status.
CLAIMED, DONE_ELSEWHERE = "claimed", "done elsewhere"


def stored_status(data_dir) -> dict[str, str | None]:
    """run_id → status of every stored run: the Delta table's, then the inbox's (newer, so it wins)."""
    rows = stored_runs(location=parse(data_dir))
    status = dict(zip(rows.column("run_id").to_pylist(), rows.column("status").to_pylist()))
    return status | inventory(data_dir).status if parse(data_dir).is_local else status  # no inbox in a bucket


def pending(runs, data_dir) -> list[RunConfig]:
    status = stored_status(data_dir)
    return [c for c in runs if status.get(c.run_id) not in FINAL]


def _committed_final(data_dir: str, run_id: str) -> bool:
    """The run is in the Delta table with a final status (ingested since `pending` looked); reads its row only."""
    status = stored_runs(location=parse(data_dir), run_ids=[run_id]).column("status").to_pylist()
    return any(s in FINAL for s in status)


def run_one_remote(cfg: RunConfig, data_dir: str, threads: int, progress: bool) -> dict:
    """`run_one` on object storage: under the run's lease, train it unless the table holds it for good
    (committed whole or not at all, so there is no half run to quarantine)."""
    with claim_for(data_dir, cfg.sweep, cfg.run_id) as claim:
        if not claim.held:
            return {"run_id": cfg.run_id, "status": CLAIMED, "holder": claim.holder()}
        if _committed_final(data_dir, cfg.run_id):
            return {"run_id": cfg.run_id, "status": DONE_ELSEWHERE}
        return _train_or_record(cfg, data_dir, threads, progress)


def run_one(config_json: str, data_dir: str, threads: int, progress: bool = False, owner=None) -> dict:
    """Train one run under its claim; an exception becomes a stored `failed` row so the sweep goes on.
    `owner`: the collector's `lifetime.identity()`, for a task that must end when the collector does."""
    if owner is not None:
        exit_with(owner)
    cfg = RunConfig.model_validate_json(config_json)
    if not parse(data_dir).is_local:
        return run_one_remote(cfg, data_dir, threads, progress)
    with Claim(data_dir, cfg.sweep, cfg.run_id) as claim:
        if not claim.held:
            return {"run_id": cfg.run_id, "status": CLAIMED, "holder": claim.holder()}
        status, problems = run_state(data_dir, cfg.sweep, cfg.run_id)
        if status in FINAL or (status is None and not problems and _committed_final(data_dir, cfg.run_id)):
            return {"run_id": cfg.run_id, "status": DONE_ELSEWHERE}
        if problems:
            try:
                moved = quarantine(data_dir, run_dir(data_dir, cfg.sweep, cfg.run_id))
            except OSError as exc:
                error = f"stored run failed verification ({problems[0].detail}) and cannot be moved: {one_line(exc)}"
                print(f"run {cfg.run_id} not run: {error}", file=sys.stderr)
                return {"run_id": cfg.run_id, "status": "failed", "error": error}
            print(
                f"warning: stored run {cfg.run_id} failed verification ({problems[0].kind}: {problems[0].detail}); "
                f"moved to {moved} and run again",
                file=sys.stderr,
            )
        return _train_or_record(cfg, data_dir, threads, progress)


def _train_or_record(cfg: RunConfig, data_dir: str, threads: int, progress: bool) -> dict:
    from gclab.collect.recorder import one_line_error
    from gclab.collect.train import train  # heavy imports inside the worker

    try:
        return train(cfg, data_dir, threads=threads, progress=progress)
    except Exception as exc:  # noqa: BLE001 — the Recorder stored it as failed; shown, retried by the next collect
        error = one_line_error(exc)
        # One line per failed run, as for any bad input; GCLAB_TRACEBACK=1 shows the whole traceback for debugging.
        if os.environ.get("GCLAB_TRACEBACK"):
            traceback.print_exc()
        else:
            print(
                f"run {cfg.run_id} failed: {error} (stored in runs.error; GCLAB_TRACEBACK=1 shows the traceback)",
                file=sys.stderr,
            )
        return {"run_id": cfg.run_id, "status": "failed", "error": error}


def run_local(todo: list[RunConfig], data_dir: str, workers: int, bar) -> list[dict]:
    cores = os.cpu_count() or 1
    workers = max(1, min(workers, len(todo)))
    threads = max(1, cores // workers)  # never oversubscribe the cores
    if workers == 1:
        rows = []
        for cfg in todo:  # one process: a bar for the current run too (parallel bars would garble)
            rows.append(run_one(cfg.model_dump_json(), data_dir, threads, progress=True))
            bar.update(1)
        return rows
    rows = []
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=get_context("spawn"), initializer=exit_with_parent, initargs=(os.getpid(),)
    ) as pool:
        futures = [pool.submit(run_one, cfg.model_dump_json(), data_dir, threads) for cfg in todo]
        for fut in as_completed(futures):
            rows.append(fut.result())
            bar.update(1)
    return rows


def run_ray(todo: list[RunConfig], data_dir: str, bar) -> list[dict]:
    import ray
    import torch

    if not ray.is_initialized():
        # RAY_ADDRESS set: join that cluster (data_dir on a shared file system, or an object-store URI).
        address = os.environ.get("RAY_ADDRESS")
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        if not address:  # the cluster is this collector's: it ends when the collector dies
            start_reaper()
    gpus = 1 if torch.cuda.is_available() else 0
    task = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=3, retry_exceptions=False)(run_one)
    owner = identity()
    # Ray's remote() wrapper hides run_one's signature from the type checker.
    pending_refs = [task.remote(cfg.model_dump_json(), data_dir, 1, False, owner) for cfg in todo]  # pyright: ignore[reportCallIssue]
    rows = []
    while pending_refs:
        done, pending_refs = ray.wait(pending_refs, num_returns=1)
        rows += ray.get(done)
        bar.update(len(done))
    return rows


TOO_DEEP = "a value in --set or the sweep file is nested too deeply to read; use plain numbers, strings or lists"


def check_workers(workers) -> None:
    """ConfigError (one line) unless `workers` is None (one per core) or a positive whole number."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"--workers {workers} is not a number of processes: use 1 or more (default: one per core)")


def run_sweep(
    runs, data_dir, *, backend: str = "local", workers: int | None = None, label: str = "sweep"
) -> list[dict]:
    check_workers(workers)
    data_dir = str(Path(data_dir).resolve()) if parse(data_dir).is_local else str(data_dir)
    todo = pending(runs, data_dir)
    print(f"{label}: {len(runs)} runs, {len(runs) - len(todo)} already in the store, {len(todo)} to run")
    if not todo:
        return []
    with tqdm(total=len(todo), desc=label, unit="run") as bar:
        if backend == "ray":
            return run_ray(todo, data_dir, bar)
        return run_local(todo, data_dir, workers or os.cpu_count() or 1, bar)


def collect_sweep(
    sweep,
    data="data",
    *,
    scale: str = "cpu",
    overrides: dict | None = None,
    backend: str = "local",
    workers: int | None = None,
    allow_huge: bool = False,
) -> list[dict]:
    """Train a sweep (shipped name, .toml path, `demo`, or a list of them) into the store at `data`; runs already
    stored are skipped. Returns the rows of the runs trained now. Bad input raises a one-line ConfigError
    before anything is written."""
    from gclab.collect.preflight import preflight
    from gclab.collect.sweep import expand, load_sweep

    check_workers(workers)
    names, scale = expand([sweep] if isinstance(sweep, (str, Path)) else sweep, scale)
    try:
        sweeps = [load_sweep(str(n), scale=scale, overrides=overrides, allow_huge=allow_huge) for n in names]
    except RecursionError:
        raise ConfigError(TOO_DEEP) from None
    preflight(sweeps, data, allow_huge=allow_huge)
    rows = [r for s in sweeps for r in run_sweep(s.runs, data, backend=backend, workers=workers, label=s.name)]
    ingest_if_full(data=data)
    return rows


def ingest_if_full(*, data) -> None:
    """Commit the inbox to the store's table once it holds COMPACT_AT runs (store.ingest)."""
    from gclab.store.ingest import COMPACT_AT, inbox_size, ingest

    if inbox_size(data_dir=Path(data)) >= COMPACT_AT:
        ingest(location=parse(Path(data).resolve()), say=lambda msg: print(f"store: {msg}"))

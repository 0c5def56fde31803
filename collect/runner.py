"""Run a sweep: skip what is already stored, run the rest on a local process pool or on Ray.

Completed and diverged runs are final. Missing, incomplete (killed) and failed runs are run
again from the start. Each run is written by one process, so workers never share a file.
"""
from __future__ import annotations

import os
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

from tqdm import tqdm

from collect.config import RunConfig
from store.layout import RunFolder, run_dir, stored_status

FINAL = ("completed", "diverged")


def pending(runs, data_dir) -> list[RunConfig]:
    return [c for c in runs if stored_status(run_dir(data_dir, c.sweep, c.run_id)) not in FINAL]


def run_one(config_json: str, data_dir: str, threads: int, progress: bool = False) -> dict:
    """Train one run; an exception becomes a stored `failed` row so the sweep goes on."""
    from collect.train import train  # heavy import inside the worker

    cfg = RunConfig.model_validate_json(config_json)
    try:
        return train(cfg, data_dir, threads=threads, progress=progress)
    except Exception as exc:  # noqa: BLE001 — recorded, shown, and retried by the next collect
        error = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        folder = RunFolder(data_dir, cfg.sweep, cfg.run_id)
        folder.start()
        folder.finish({**cfg.runs_row(), "status": "failed", "error": error, "steps_done": 0})
        traceback.print_exc()
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
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(run_one, cfg.model_dump_json(), data_dir, threads) for cfg in todo]
        for fut in as_completed(futures):
            rows.append(fut.result())
            bar.update(1)
    return rows


def run_ray(todo: list[RunConfig], data_dir: str, bar) -> list[dict]:
    import ray
    import torch

    if not ray.is_initialized():
        # RAY_ADDRESS set: join that cluster (data_dir must be on a shared file system).
        ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    gpus = 1 if torch.cuda.is_available() else 0
    task = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=3, retry_exceptions=False)(run_one)
    pending_refs = [task.remote(cfg.model_dump_json(), data_dir, 1) for cfg in todo]
    rows = []
    while pending_refs:
        done, pending_refs = ray.wait(pending_refs, num_returns=1)
        rows += ray.get(done)
        bar.update(len(done))
    return rows


def run_sweep(runs, data_dir, *, backend: str = "local", workers: int | None = None, label: str = "sweep") -> list[dict]:
    data_dir = str(Path(data_dir).resolve())
    todo = pending(runs, data_dir)
    print(f"{label}: {len(runs)} runs, {len(runs) - len(todo)} already in the store, {len(todo)} to run")
    if not todo:
        return []
    with tqdm(total=len(todo), desc=label, unit="run") as bar:
        if backend == "ray":
            return run_ray(todo, data_dir, bar)
        return run_local(todo, data_dir, workers or os.cpu_count() or 1, bar)

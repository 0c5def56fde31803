"""Collection figures: wall time of the `demo` sweep, and one fig5 run (width nearest 60, seed 0)
with per-step metrics on and off."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gclab.store.sweeps import DEMO

ROOT = Path(__file__).resolve().parents[1]


def _fig5_run_seconds(metrics: bool, data_dir: str) -> tuple[float, int]:
    from gclab.collect.sweep import load_sweep
    from gclab.collect.train import train

    runs = [c for c in load_sweep("fig5", overrides={"metrics": metrics}).runs if c.seed == 0]
    cfg = min(runs, key=lambda c: abs(c.width - 60))  # a run near the interpolation threshold
    t0 = time.perf_counter()
    train(cfg, data_dir, threads=2)
    return time.perf_counter() - t0, cfg.width


def run() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "gclab.collect", "--sweep", DEMO, "--data", tmp],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        demo_s = time.perf_counter() - t0
        on, width = _fig5_run_seconds(True, tmp)
        off, _ = _fig5_run_seconds(False, tmp)
    return {
        "demo_sweep_wall_s": round(demo_s, 2),
        "demo_target_s": 120,
        "fig5_run_width": width,
        "fig5_run_metrics_on_s": round(on, 2),
        "fig5_run_metrics_off_s": round(off, 2),
        "fig5_metrics_overhead_ratio": round(on / off, 3),
    }

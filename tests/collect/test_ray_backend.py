"""BACKEND=ray on a real local Ray cluster gives the same run_ids and values as the local pool."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gclab.collect.runner import run_sweep
from gclab.collect.sweep import load_sweep
from gclab.store import db
from gclab.store.claim import Claim
from tests._helpers.cli import ROOT

ray = pytest.importorskip("ray", reason="ray is not installed (pip install -e '.[ray]')")


def values(data):
    with db.connect(data) as con:
        steps = db.query(con, "SELECT run_id, step, train_loss, gc, grad_norm_sq FROM steps ORDER BY run_id, step")
        evals = db.query(con, "SELECT run_id, step, split, loss, acc, gc FROM evals ORDER BY run_id, step, split")
    return steps, evals


def test_ray_matches_local(tmp_path):
    sweep = load_sweep(
        "thm51",
        scale="demo",
        overrides={
            "steps": 20,
            "eval_every": 10,
            "n_train": 256,
            "n_test": 64,
            "eval_examples": 32,
            "sharpness_iters": 2,
            "bfd_batch": 8,
            "seeds": [0],
        },
    )
    # Two local workers on 2 cores run with 1 torch thread each, like the Ray tasks.
    run_sweep(sweep.runs, tmp_path / "local", backend="local", workers=2)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        run_sweep(sweep.runs, tmp_path / "ray", backend="ray")
    finally:
        ray.shutdown()
    s_local, e_local = values(tmp_path / "local")
    s_ray, e_ray = values(tmp_path / "ray")
    assert set(s_local["run_id"]) == {c.run_id for c in sweep.runs} == set(s_ray["run_id"])
    assert s_local.height > 0 and e_local.height > 0
    assert s_local.equals(s_ray) and e_local.equals(e_ray)


SLOW = """
[base]
dataset = "digits"
n_train = 64
n_test = 32
width = 8
steps = 1000000
batch_size = 16
eval_every = 1000000
[grid]
lr = [0.01, 0.02]
"""


def _descendants(root: int) -> dict[int, str]:
    """pid → start time of every process below `root` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = {}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out[child] = _started(child)
            todo.append(child)
    return out


def _started(pid: int) -> str | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else fields[19]  # a zombie has ended


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_ray_tasks_and_ray_processes_end_when_the_collector_is_killed(tmp_path):
    sweep, data = tmp_path / "slow.toml", tmp_path / "data"
    sweep.write_text(SLOW)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gclab", "collect", "--sweep", str(sweep), "--data", str(data), "--backend", "ray"],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 300
    claims: list[Path] = []
    while not claims:  # a Ray task holds a run and is training it
        assert proc.poll() is None and time.time() < deadline, "the Ray collect did not start a run"
        claims = [p for p in (data / "runs").glob("sweep=slow/.run_id=*.claim") if p.read_text().strip()]
        time.sleep(0.5)
    time.sleep(3)  # let Ray's agents come up too
    seen = _descendants(proc.pid)
    task_pid = int(claims[0].read_text().split()[1])
    assert task_pid in seen and len(seen) >= 3, seen  # the task, the raylet and the GCS at least
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # Liveness, not speed: left alone, Ray's agents linger about a minute after their raylet died.
    deadline = time.time() + 30
    while alive := [p for p, t in seen.items() if t is not None and _started(p) == t]:
        assert time.time() < deadline, f"still running after the collector died: {alive}"
        time.sleep(0.5)
    for claim_file in claims:  # no task holds its run any more: the claims are free
        claim = Claim(data, "slow", claim_file.name.removeprefix(".run_id=").removesuffix(".claim"))
        assert claim.acquire(), claim.holder()
        claim.release()

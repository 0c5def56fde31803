"""The sweep runner: resume after SIGKILL of the whole process group, failed runs, divergence."""

import os
import signal
import subprocess
import sys
import time

from gclab.store import db
from gclab.store.check import inventory
from tests._helpers.cli import ROOT, run_cli

SWEEP = """
seeds = [0, 1, 2]
[base]
dataset = "mnist1d"
n_train = 512
n_test = 128
width = 16
steps = {steps}
batch_size = 32
log_every = 10
eval_every = 50
eval_examples = 64
theorem_examples = 2
bfd_batch = 4
sharpness_iters = 2
[grid]
lr = {lrs}
"""


def store_runs(data):
    with db.connect(data) as con:
        return db.query(con, "SELECT run_id, status FROM runs")


def test_resume_after_sigkill_of_process_group(tmp_path):
    f = tmp_path / "resume.toml"
    f.write_text(SWEEP.format(steps=400, lrs="[0.01, 0.02, 0.05]"))
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gclab", "collect", "--sweep", str(f), "--data", str(data), "--workers", "2"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while len(inventory(data).runs) < 2:  # part-way: some runs done, others in flight
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(inventory(data).runs) < 9
    res = run_cli("collect", "--sweep", f, "--data", data, "--workers", "2")
    assert res.returncode == 0, res.stderr
    runs = store_runs(data)
    assert runs.height == 9 and runs["run_id"].n_unique() == 9 and set(runs["status"]) == {"completed"}
    # A third call finds everything done and trains nothing.
    res = run_cli("collect", "--sweep", f, "--data", data)
    assert "9 already in the store, 0 to run" in res.stdout


def test_divergent_run_is_stored_and_sweep_completes(tmp_path):
    f = tmp_path / "div.toml"
    f.write_text(SWEEP.format(steps=60, lrs="[0.05, 100.0]").replace("seeds = [0, 1, 2]", "seeds = [0]"))
    res = run_cli("collect", "--sweep", f, "--data", tmp_path / "data")
    assert res.returncode == 0, res.stderr
    with db.connect(tmp_path / "data") as con:
        got = dict(db.query(con, "SELECT lr, status FROM runs").iter_rows())
    assert got == {0.05: "completed", 100.0: "diverged"}


def test_failed_run_is_recorded_and_retried(tmp_path):
    f = tmp_path / "fail.toml"
    # resnet18 rejects 1-D inputs: that run fails, the mlp run completes.
    body = SWEEP.format(steps=20, lrs="[0.05]").replace("seeds = [0, 1, 2]", "seeds = [0]")
    f.write_text(body.replace("[grid]\nlr = [0.05]", '[grid]\nmodel = ["mlp", "resnet18"]'))
    res = run_cli("collect", "--sweep", f, "--data", tmp_path / "data", "--workers", "1")
    assert res.returncode == 1 and "1 failed" in res.stdout
    with db.connect(tmp_path / "data") as con:
        got = dict(db.query(con, "SELECT model, status FROM runs").iter_rows())
        err = db.query(con, "SELECT error FROM runs WHERE status = 'failed'")["error"][0]
    assert got == {"mlp": "completed", "resnet18": "failed"} and "image inputs" in err
    res = run_cli("collect", "--sweep", f, "--data", tmp_path / "data", "--workers", "1")
    assert "1 already in the store, 1 to run" in res.stdout

"""Recorder: a user's own loop (examples/own_loop.py) stored and checked against float64 brute force."""

import copy
import json
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from gclab.collect.recorder import Diverged, Recorder
from gclab.store import db
from gclab.store.claim import ClaimTaken
from gclab.store.layout import run_dir
from tests._helpers.bruteforce import batch_reference
from tests._helpers.cli import ROOT, parquet_sha256, run_cli

sys.path.insert(0, str(ROOT / "examples"))
import own_loop  # noqa: E402


def test_own_loop_rows_match_float64_bruteforce(tmp_path, monkeypatch):
    seen = []
    real_step = Recorder.step

    def spy(self, step, model, x, y, **kw):
        before = copy.deepcopy(model).double()
        row = real_step(self, step, model, x, y, **kw)
        seen.append((step, before, x.double(), y.clone(), [p.grad.clone() for p in model.parameters()]))
        return row

    monkeypatch.setattr(Recorder, "step", spy)
    run_id = own_loop.main(["--data", str(tmp_path), "--steps", "12"])
    assert len(seen) == 12
    with db.connect(tmp_path) as con:
        stored = {r["step"]: r for r in db.query(con, "SELECT * FROM steps WHERE run_id = ?", [run_id]).to_dicts()}
        run = db.query(con, "SELECT * FROM runs").to_dicts()
    assert len(run) == 1 and run[0]["status"] == "completed" and run[0]["sweep"] == "mine"
    assert run[0]["width"] == 64 and run[0]["lr"] == 0.05 and run[0]["steps_done"] == 12
    assert json.loads(run[0]["config_json"])["dataset"] == "blobs"
    for step, model64, x, y, grads_after in seen:
        gc, loss, gsq, grads = batch_reference(model64, x, y)
        row = stored[step]
        assert row["gc"] == pytest.approx(gc, rel=1e-4)
        assert row["train_loss"] == pytest.approx(loss, rel=1e-5)
        assert row["grad_norm_sq"] == pytest.approx(gsq, rel=1e-4)
        for g32, g64 in zip(grads_after, grads):  # rec.step left ∇L_B in .grad, as loss.backward() would
            torch.testing.assert_close(g32.double(), g64, rtol=1e-4, atol=1e-6)


def test_own_loop_script_and_gclab_sql_show_the_run(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "own_loop.py"), "--data", str(tmp_path / "d"), "--steps", "60"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    import gclab

    frame = gclab.query(
        "SELECT r.sweep, r.status, count(DISTINCT e.step) AS evals, count(DISTINCT e.split) AS splits "
        "FROM runs r JOIN evals e USING (run_id) GROUP BY ALL",
        data=tmp_path / "d",
    )
    assert frame.to_dicts() == [{"sweep": "mine", "status": "completed", "evals": 3, "splits": 2}]  # steps 0, 50, 60
    res = run_cli("sql", "--data", tmp_path / "d", "-q", "SELECT sweep, status FROM runs")
    assert res.returncode == 0 and "mine" in res.stdout and "completed" in res.stdout, res.stderr


def test_exception_is_stored_as_failed_and_propagates(tmp_path):
    model = own_loop.make_model(width=8)
    x, y = own_loop.make_data(16)
    with pytest.raises(RuntimeError, match="boom"):
        with Recorder(tmp_path, "mine", {"width": 8}) as rec:
            rec.step(0, model, x, y)
            raise RuntimeError("boom\nsecond line")
    row = pq.read_table(run_dir(tmp_path, "mine", rec.run_id) / "run.parquet").to_pylist()[0]
    assert row["status"] == "failed" and row["error"] == "RuntimeError: boom second line"
    with Recorder(tmp_path, "mine", {"width": 8}, tag="b") as rec2:
        raise Diverged("loss exploded")
    assert rec2.run_id != rec.run_id and rec2.row["status"] == "diverged" and rec2.row["error"] == "loss exploded"


def test_bad_config_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="width"):
        Recorder(tmp_path, "mine", {"width": "wide"})
    with pytest.raises(ValueError, match="JSON"):
        Recorder(tmp_path, "mine", {"width": 8, "fn": object()})
    with pytest.raises(ValueError, match="sweep"):
        Recorder(tmp_path, "no/slash", {})
    assert not (tmp_path / "runs").exists()


# --- one run, one writer, all or nothing (issue 22) -------------------------------------------

HOLDER = """
import sys, time, pathlib
sys.path.insert(0, sys.argv[3])
import own_loop
from gclab.collect.recorder import Recorder
model = own_loop.make_model(width=8); x, y = own_loop.make_data(16)
ready, go = pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[2] + ".go")
with Recorder(sys.argv[1], "mine", {"width": 8}) as rec:
    for step in range(5):
        rec.step(step, model, x, y)
    ready.write_text("in the block")
    while not go.exists():  # the test SIGKILLs us here, or lets us finish
        time.sleep(0.05)
"""


def _record(data, steps: int, sweep: str = "mine", **kw):
    model = own_loop.make_model(width=8)
    x, y = own_loop.make_data(16)
    with Recorder(data, sweep, {"width": 8}, **kw) as rec:
        for step in range(steps):
            rec.step(step, model, x, y)
    return rec


def _holder(data, tmp_path):
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(data), str(ready), str(ROOT / "examples")], cwd=ROOT)
    deadline = time.time() + 300
    while not ready.exists():
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    return proc, ready


def test_a_re_recording_killed_mid_block_leaves_the_stored_run_whole(tmp_path):
    data = tmp_path / "data"
    first = _record(data, 3)
    before = parquet_sha256(data)
    assert len(before) == 2  # steps.parquet and run.parquet of the completed run
    proc, _ = _holder(data, tmp_path)
    assert parquet_sha256(data) == before  # mid-block, the stored run is untouched
    proc.kill()  # SIGKILL: no chance to clean up
    proc.wait()
    assert parquet_sha256(data) == before
    res = run_cli("check", "--data", data)
    assert res.returncode == 0 and "1 runs verified, 0 problems" in res.stdout, res.stdout
    # The next recording of that config replaces the run whole, the killed one's leftovers are gone.
    again = _record(data, 2)
    assert again.run_id == first.run_id and again.row["steps_done"] == 2
    after = parquet_sha256(data)
    assert set(after) == set(before) and after != before
    assert [p.name for p in run_dir(data, "mine", first.run_id).parent.iterdir()] == [f"run_id={first.run_id}"]


def test_a_second_process_recording_the_same_config_is_refused_and_mixes_nothing(tmp_path):
    data = tmp_path / "data"
    _record(data, 3)
    before = parquet_sha256(data)
    proc, ready = _holder(data, tmp_path)
    model = own_loop.make_model(width=8)
    x, y = own_loop.make_data(16)
    with pytest.raises(ClaimTaken) as refused:
        with Recorder(data, "mine", {"width": 8}) as rec:
            rec.step(0, model, x, y)
    message = str(refused.value)
    assert "\n" not in message and "pid" in message and "wait for it" in message
    assert str(proc.pid) in message
    assert parquet_sha256(data) == before
    Path(str(ready) + ".go").write_text("")
    assert proc.wait(timeout=300) == 0
    with db.connect(data) as con:
        steps = db.query(con, "SELECT step FROM steps ORDER BY step")["step"].to_list()
        runs = db.query(con, "SELECT status, steps_done FROM runs").to_dicts()
    assert steps == [0, 1, 2, 3, 4] and runs == [{"status": "completed", "steps_done": 5}]  # all the holder's


def test_a_recorder_records_one_block(tmp_path):
    rec = _record(tmp_path, 2)
    before = parquet_sha256(tmp_path)
    with pytest.raises(RuntimeError, match="already recorded run"):
        with rec:
            pass
    assert parquet_sha256(tmp_path) == before


class NaNOut(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x) * float("nan")


def test_a_non_finite_loss_in_a_users_loop_ends_the_run_diverged(tmp_path):
    model = NaNOut(own_loop.make_model(width=8))
    x, y = own_loop.make_data(16)
    reached = []
    with Recorder(tmp_path, "mine", {"width": 8}) as rec:
        for step in range(5):
            rec.step(step, model, x, y)
            reached.append(step)
    assert reached == [] and rec.row["status"] == "diverged" and rec.row["steps_done"] == 0
    assert "nan" in rec.row["error"] and "step 0" in rec.row["error"]
    with Recorder(tmp_path, "mine", {"width": 8}, tag="eval") as rec:  # an evaluation's loss too
        rec.evaluate(0, model, {"test": (x, y)})
    assert rec.row["status"] == "diverged" and "test loss nan" in rec.row["error"]


@pytest.mark.parametrize("sweep", ["fig5", "igr", "demo"])
def test_shipped_sweep_names_are_refused_unless_asked_for(tmp_path, sweep):
    with pytest.raises(ValueError, match="shipped sweep") as refused:
        Recorder(tmp_path, sweep, {"width": 8})
    assert "\n" not in str(refused.value) and "shipped_sweep=True" in str(refused.value)
    assert not (tmp_path / "runs").exists()
    rec = _record(tmp_path, 1, sweep=sweep, shipped_sweep=True)  # the explicit opt-in
    assert rec.row["status"] == "completed" and rec.sweep == sweep


@pytest.mark.parametrize("sweep", ["mine\n", "mine\nx", " mine", "sweep=x"])
def test_sweep_names_are_matched_whole(tmp_path, sweep):
    with pytest.raises(ValueError, match="not a valid name"):
        Recorder(tmp_path, sweep, {"width": 8})
    assert not (tmp_path / "runs").exists()

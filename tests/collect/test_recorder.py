"""Recorder: a user's own loop (examples/own_loop.py) stored and checked against float64 brute force."""

import copy
import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import torch

from gclab.collect.recorder import Diverged, Recorder
from gclab.store import db
from gclab.store.layout import run_dir
from tests._helpers.bruteforce import batch_reference
from tests._helpers.cli import ROOT, run_cli

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

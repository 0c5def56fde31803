"""gclab.lightning.GCCallback with a real lightning.Trainer on CPU (examples/lightning_loop.py)."""

import sys

import pytest
import torch

pytest.importorskip("lightning")  # in the dev extra; `make test` always has it

import lightning as L  # noqa: E402

from gclab.lightning import GCCallback  # noqa: E402
from gclab.store import db  # noqa: E402
from tests._helpers.bruteforce import batch_reference  # noqa: E402
from tests._helpers.cli import ROOT, parquet_sha256  # noqa: E402

sys.path.insert(0, str(ROOT / "examples"))
import lightning_loop  # noqa: E402


def test_lightning_example_records_steps_and_evals(tmp_path):
    run_id = lightning_loop.main(["--data", str(tmp_path), "--epochs", "2"])
    with db.connect(tmp_path) as con:
        run = db.query(con, "SELECT * FROM runs").to_dicts()
        steps = db.query(con, "SELECT step, gc, train_loss FROM steps ORDER BY step")
        evals = db.query(con, "SELECT DISTINCT step, split FROM evals ORDER BY step, split")
    assert [r["run_id"] for r in run] == [run_id] and run[0]["status"] == "completed"
    assert run[0]["sweep"] == "mine_lightning" and run[0]["width"] == 64
    n_steps = 2 * (1024 // 32)  # 2 epochs of 32 batches
    assert steps["step"].to_list() == list(range(0, n_steps, 10))
    assert (steps["gc"] > 0).all() and (steps["train_loss"] > 0).all()
    assert evals["step"].unique().to_list() == [0, 50, n_steps] and set(evals["split"]) == {"train", "test"}


class Boom(lightning_loop.Classifier):
    def training_step(self, batch, batch_idx):
        if self.global_step == 3:
            raise RuntimeError("boom")
        return super().training_step(batch, batch_idx)


def test_callback_rows_match_bruteforce_and_failure_is_stored(tmp_path):
    x, y = lightning_loop.make_data(64)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    cb = GCCallback(tmp_path, "lt", {"width": 8}, log_every=1)
    module = Boom(width=8)
    seen = {}
    real = cb.recorder.step

    def spy(step, model, xb, yb, **kw):  # a float64 copy of the parameters Lightning is about to step from
        ref = lightning_loop.Classifier(width=8).double()
        ref.load_state_dict(model.state_dict())
        seen[step] = batch_reference(ref, xb.double(), yb)
        return real(step, model, xb, yb, **kw)

    cb.recorder.step = spy
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        callbacks=[cb],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(module, loader)
    with db.connect(tmp_path) as con:
        run = db.query(con, "SELECT status, error FROM runs").to_dicts()
        steps = {r["step"]: r for r in db.query(con, "SELECT * FROM steps").to_dicts()}
    assert run == [{"status": "failed", "error": "RuntimeError: boom"}]
    assert sorted(steps) == [0, 1, 2, 3]
    for step, (gc, loss, gsq, _) in seen.items():
        assert steps[step]["gc"] == pytest.approx(gc, rel=1e-4)
        assert steps[step]["train_loss"] == pytest.approx(loss, rel=1e-5)
        assert steps[step]["grad_norm_sq"] == pytest.approx(gsq, rel=1e-4)


def _trainer(cb, **kw):
    return L.Trainer(
        accelerator="cpu",
        callbacks=[cb],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kw,
    )


def test_one_callback_for_two_fits_refuses_the_second_and_keeps_the_first_run(tmp_path):
    x, y = lightning_loop.make_data(64)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    cb = GCCallback(tmp_path, "lt", {"width": 8}, log_every=1)
    _trainer(cb, max_epochs=1).fit(lightning_loop.Classifier(width=8), loader)
    before = parquet_sha256(tmp_path)
    with pytest.raises(RuntimeError, match="already recorded run") as refused:
        _trainer(cb, max_epochs=1).fit(lightning_loop.Classifier(width=8), loader)
    assert "\n" not in str(refused.value) and "its own GCCallback" in str(refused.value)
    assert parquet_sha256(tmp_path) == before
    with db.connect(tmp_path) as con:
        dup = db.query(con, "SELECT count(*) AS n, count(DISTINCT (run_id, step)) AS k FROM steps").row(0)
        runs = db.query(con, "SELECT status FROM runs")["status"].to_list()
    assert dup == (4, 4) and runs == ["completed"]


class NaNClassifier(lightning_loop.Classifier):
    def forward(self, x):
        return super().forward(x) * float("nan")


def test_a_non_finite_loss_ends_the_fit_and_the_run_diverged(tmp_path):
    x, y = lightning_loop.make_data(64)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    cb = GCCallback(tmp_path, "lt", {"width": 8}, log_every=1)
    trainer = _trainer(cb, max_epochs=3)
    trainer.fit(NaNClassifier(width=8), loader)
    assert trainer.global_step <= 1  # stopped after the batch that diverged
    with db.connect(tmp_path) as con:
        run = db.query(con, "SELECT status, error, steps_done FROM runs").to_dicts()
    assert len(run) == 1 and run[0]["status"] == "diverged" and "nan" in run[0]["error"]
    assert run[0]["steps_done"] == 0

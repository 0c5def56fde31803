"""gclab.lightning.GCCallback with a real lightning.Trainer on CPU (examples/lightning_loop.py)."""

import sys

import pytest
import torch

pytest.importorskip("lightning")  # in the dev extra; `make test` always has it

import lightning as L  # noqa: E402

from gclab.lightning import GCCallback  # noqa: E402
from gclab.store import db  # noqa: E402
from tests._helpers.bruteforce import batch_reference  # noqa: E402
from tests._helpers.cli import ROOT  # noqa: E402

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

"""The stop rule: training ends at the first eval where the FULL training set is fitted."""

import pytest
import torch

from gclab.collect.config import RunConfig
from gclab.collect.sweep import ConfigError, load_sweep
from gclab.collect.train import load_run_dataset, train
from gclab.store import db

# 64 training examples: the eval subset (16) is smaller, so the rule must look past it.
FIT = dict(
    sweep="t",
    dataset="mnist1d",
    n_train=64,
    n_test=32,
    width=64,
    depth=2,
    lr=0.1,
    batch_size=16,
    steps=3000,
    log_every=50,
    eval_every=25,
    eval_examples=16,
    theorem_examples=0,
    bfd_batch=0,
    sharpness_iters=0,
    dtype="float64",
    stop_at_train_error=0.0,
)


def _errors_by_brute_force(cfg, data):
    """Train error on every training example at each eval step, re-training a copy step by step
    with the same seeds (an independent loop: plain forward passes, no collect.evaluate)."""
    from gclab.collect.init import initialize
    from gclab.collect.models import build_model
    from gclab.collect.train import batches, make_optimizer

    ds = load_run_dataset(cfg, data)
    x, y = ds.x_train.double(), ds.y_train
    gen = torch.Generator().manual_seed(cfg.seed)
    model = build_model("mlp", input_shape=ds.input_shape, n_out=ds.n_classes, width=cfg.width, depth=cfg.depth)
    initialize(model, cfg.init, zero_bias=cfg.zero_bias, generator=gen)
    model.double()
    opt, order, out = make_optimizer(cfg, model.parameters()), batches(ds.n_train, cfg.batch_size, gen), {}
    for step in range(cfg.steps + 1):
        if step % cfg.eval_every == 0:
            with torch.no_grad():
                out[step] = sum(int(model(x[i : i + 1]).argmax(1) != y[i]) for i in range(len(x))) / len(x)
            if out[step] == 0:
                return out
        idx = next(order)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    return out


def test_stops_at_first_eval_with_zero_train_error(tmp_path):
    cfg = RunConfig(**FIT)
    train(cfg, tmp_path, threads=1)
    ref = _errors_by_brute_force(cfg, tmp_path)
    first_zero = min(s for s, e in ref.items() if e == 0)
    assert first_zero > 0 and any(e > 0 for e in ref.values())  # the rule had something to wait for
    with db.connect(tmp_path) as con:
        runs = db.query(con, "SELECT status, target_reached, target_step, steps_done, final_train_error FROM runs")
        last = db.query(con, "SELECT max(step) AS s FROM evals")["s"][0]
    assert runs.row(0) == ("completed", True, first_zero, first_zero, 0.0)
    assert last == first_zero  # training stopped there: that eval is the run's last


def test_stop_check_between_evals_lands_on_the_first_fitted_check(tmp_path):
    """stop_check_every: the target is checked every 5 steps although evals come every 100; the run
    stops (and is evaluated) at the first check with zero error on every training example."""
    cfg = RunConfig(**{**FIT, "eval_every": 100, "stop_check_every": 5})
    train(cfg, tmp_path, threads=1)
    ref = _errors_by_brute_force(RunConfig(**{**FIT, "eval_every": 5}), tmp_path)
    first_zero = min(s for s, e in ref.items() if e == 0)
    assert first_zero % 100 != 0  # lands between two evals: the check did the stopping
    with db.connect(tmp_path) as con:
        runs = db.query(con, "SELECT target_reached, target_step, steps_done, final_train_error FROM runs")
        steps = db.query(con, "SELECT DISTINCT step FROM evals ORDER BY step")["step"].to_list()
    assert runs.row(0) == (True, first_zero, first_zero, 0.0)
    assert steps == [*range(0, first_zero, 100), first_zero]


def test_cap_reached_without_target(tmp_path):
    cfg = RunConfig(**{**FIT, "steps": 50, "lr": 1e-4})
    row = train(cfg, tmp_path, threads=1)
    ref = _errors_by_brute_force(cfg, tmp_path)
    assert row["target_reached"] is False and row["target_step"] is None and row["steps_done"] == 50
    assert row["final_train_error"] == pytest.approx(ref[50], abs=1e-12) and ref[50] > 0
    assert row["zero_bias"] is False  # torch's default init keeps its random biases


def test_loss_target_and_no_target(tmp_path):
    loss_cfg = RunConfig(**{**FIT, "stop_at_train_error": None, "stop_at_train_loss": 0.5})
    row = train(loss_cfg, tmp_path, threads=1)
    assert row["target_reached"] and row["final_train_loss"] <= 0.5 and row["steps_done"] < loss_cfg.steps
    plain = RunConfig(**{**FIT, "stop_at_train_error": None, "steps": 50})
    row = train(plain, tmp_path, threads=1)
    assert row["target_reached"] is None and row["steps_done"] == 50 and 0 <= row["final_train_error"] <= 1


def test_train_error_target_needs_classes():
    with pytest.raises(ValueError, match="stop_at_train_loss"):
        RunConfig(dataset="parabola", loss="mse", stop_at_train_error=0.0)


@pytest.mark.parametrize("sweep", ["fig3", "fig4", "fig4_momentum", "fig4_adam", "gcreg", "igr"])
def test_interpolation_sweeps_train_to_zero_error(sweep):
    runs = load_sweep(sweep).runs
    assert all(r.stop_at_train_error == 0.0 for r in runs)
    lrs = sorted({r.lr for r in runs})
    assert lrs[-1] / lrs[0] >= 10 - 1e-9 or sweep in ("fig3", "gcreg")  # ≥ 1 decade of lr where lr is swept
    if sweep.startswith("fig4") or sweep == "igr":
        sizes = {r.batch_size for r in runs}
        assert min(sizes) <= 16 and max(sizes) >= 256
        # compared at one matched training loss (docs/EXPERIMENTS.md), checked often between evals
        assert len({r.stop_at_train_loss for r in runs}) == 1 and runs[0].stop_at_train_loss is not None
        assert all(r.stop_check_every and r.stop_check_every < r.eval_every for r in runs)


def test_bad_target_is_a_config_error(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text("seeds = [0]\n[base]\nstop_at_train_error = 1.5\n")
    with pytest.raises(ConfigError, match="stop_at_train_error"):
        load_sweep(str(path))

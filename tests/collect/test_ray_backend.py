"""BACKEND=ray on a real local Ray cluster gives the same run_ids and values as the local pool."""

import pytest

from gclab.collect.runner import run_sweep
from gclab.collect.sweep import load_sweep
from gclab.store import db

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

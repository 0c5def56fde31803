"""The scripts in examples/ run as a user runs them (a real subprocess, tiny sizes) and their run is stored
`completed`, with steps and evals, read back through DuckDB (`gclab.query`)."""

import os
import subprocess

import pytest

import gclab
from tests._helpers.cli import PYTHON, ROOT

EXAMPLES = [
    pytest.param("own_loop.py", "mine", ["--steps", "20"], id="own_loop"),
    pytest.param("lightning_loop.py", "mine_lightning", ["--epochs", "1"], id="lightning_loop"),
    pytest.param(
        "transformer_loop.py",
        "mine_transformer",
        ["--steps", "12", "--n-train", "128", "--dim", "16"],
        id="transformer_loop",
    ),
    pytest.param(
        "transformer_lightning.py",
        "mine_transformer_lightning",
        ["--epochs", "1", "--n-train", "352", "--dim", "16"],
        id="transformer_lightning",
    ),
]


@pytest.mark.parametrize(("script", "sweep", "args"), EXAMPLES)
def test_example_records_a_completed_run(tmp_path, script, sweep, args):
    if "lightning" in script:
        pytest.importorskip("lightning")
    res = subprocess.run(
        [PYTHON, str(ROOT / "examples" / script), "--data", str(tmp_path), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert res.returncode == 0, res.stderr[-2000:]
    runs = gclab.query(f"SELECT run_id, status, error, steps_done FROM runs WHERE sweep = '{sweep}'", data=tmp_path)
    assert runs.height == 1 and runs["status"][0] == "completed", runs.to_dicts()
    assert runs["run_id"][0] in res.stdout
    steps = gclab.query(
        f"SELECT count(*) AS n, min(gc) AS gc_min, bool_and(isfinite(gc) AND isfinite(grad_norm_sq)) AS finite "
        f"FROM steps WHERE run_id = '{runs['run_id'][0]}'",
        data=tmp_path,
    )
    assert steps["n"][0] >= 2 and steps["finite"][0] and steps["gc_min"][0] > 0
    evals = gclab.query(
        f"SELECT DISTINCT split FROM evals WHERE run_id = '{runs['run_id'][0]}' ORDER BY split", data=tmp_path
    )
    assert evals["split"].to_list() == ["test", "train"]

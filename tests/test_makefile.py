"""The README's make targets, run for real against a temporary store."""

import subprocess

import pytest

from gclab.store.layout import RunFolder
from tests._helpers.cli import ROOT, tree_bytes


def make(*args, timeout=300):
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def store(tmp_path):
    for i in range(3):
        rf = RunFolder(tmp_path, "demo", f"r{i}")
        rf.start()
        rf.write("steps", {"run_id": [f"r{i}"] * 2, "step": [0, 1]})
        rf.finish({"run_id": f"r{i}", "sweep": "demo", "status": "completed"})
    return tmp_path


def test_make_sql_prints_the_count(store):
    res = make("sql", f"DATA={store}", "Q=SELECT count(*) AS n_runs FROM runs")
    assert res.returncode == 0, res.stderr
    assert "n_runs" in res.stdout and "│ 3" in res.stdout


@pytest.mark.parametrize("q", ["DELETE FROM steps", "COPY steps TO 'x.parquet'"])
def test_make_sql_refuses_writes(store, q):
    before = tree_bytes(store)
    res = make("sql", f"DATA={store}", f"Q={q}")
    assert res.returncode != 0
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "read-only" in errors[0] and "Traceback" not in res.stderr
    assert tree_bytes(store) == before and not (ROOT / "x.parquet").exists()


def test_make_collect_bad_sweep_exits_nonzero_and_touches_nothing(store):
    before = tree_bytes(store)
    res = make("collect", f"DATA={store}", "SWEEP=no_such_sweep")
    assert res.returncode != 0 and "error: unknown sweep 'no_such_sweep'" in res.stderr
    assert tree_bytes(store) == before


def test_clean_never_touches_data():
    text = (ROOT / "Makefile").read_text()
    clean = text.split("\nclean:")[1].split("\n\n")[0]
    assert "DATA" not in clean and "data" not in clean.replace("clean-data", "")

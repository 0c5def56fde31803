"""A truncated Parquet file in a completed run is named in a warning; the rest is still served."""

import pytest

from gclab.store.layout import RunFolder
from tests._helpers.cli import run_cli, tree_bytes


@pytest.fixture
def store_with_bad_file(store_dir):
    for i in range(3):
        rf = RunFolder(store_dir, "demo", f"r{i}")
        rf.start()
        rf.write("steps", {"run_id": [f"r{i}"] * 100, "step": list(range(100)), "gc": [float(i)] * 100})
        rf.finish({"run_id": f"r{i}", "sweep": "demo", "status": "completed"})
    bad = store_dir / "runs" / "sweep=demo" / "run_id=r1" / "steps.parquet"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    return store_dir, bad


def test_sql_warns_names_file_and_serves_the_rest(store_with_bad_file):
    store, bad = store_with_bad_file
    before = tree_bytes(store)
    res = run_cli(
        "sql",
        "--data",
        store,
        "-q",
        "SELECT run_id, count(*) AS n FROM steps GROUP BY run_id ORDER BY run_id",
    )
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    warnings = [line for line in res.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and str(bad) in warnings[0]
    assert "r0" in res.stdout and "r2" in res.stdout and "r1" not in res.stdout
    # The other runs' rows are all there; nothing on disk changed.
    assert res.stdout.count("100") == 2
    assert tree_bytes(store) == before


def test_corrupt_marker_file_hides_only_that_run(store_with_bad_file):
    store, _ = store_with_bad_file
    marker = store / "runs" / "sweep=demo" / "run_id=r2" / "run.parquet"
    marker.write_bytes(b"garbage")
    res = run_cli("sql", "--data", store, "-q", "SELECT run_id FROM runs ORDER BY run_id")
    assert res.returncode == 0 and "Traceback" not in res.stderr
    assert "r0" in res.stdout and "r2" not in res.stdout
    assert str(marker) in res.stderr


def test_report_warns_names_file_and_renders(store_with_bad_file, tmp_path):
    store, bad = store_with_bad_file
    before = tree_bytes(store)
    res = run_cli("report", "--data", store, "--out", tmp_path / "out")
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    assert any(line.startswith("warning:") and str(bad) in line for line in res.stderr.splitlines())
    assert (tmp_path / "out" / "index.html").stat().st_size > 0
    assert tree_bytes(store) == before

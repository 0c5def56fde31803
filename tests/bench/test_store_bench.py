"""The store bench builds its stores with the project's own writer: the runs it says it committed are
in the Delta table, whole, and `gclab sql` reads them; bad sizes are one line."""

import subprocess

import pyarrow.compute as pc

from gclab.bench.store import CADENCE, N_STEPS, build
from gclab.store.location import parse
from gclab.store.table import stored_runs, table_files
from tests._helpers.cli import PYTHON, ROOT, one_error_line, run_cli

N_RUNS = 12


def test_build_commits_every_run_and_compacts(tmp_path):
    data = tmp_path / "store"
    figures = build(data, N_RUNS, say=lambda msg: None)
    assert figures["runs"] == N_RUNS and figures["steps_per_run"] == N_STEPS
    runs = stored_runs(location=parse(data))
    assert runs.num_rows == N_RUNS == pc.count_distinct(runs.column("run_id")).as_py()
    live = table_files(location=parse(data))
    assert figures["live_files_after_compact"] == sum(map(len, live.values())) > 0
    assert figures["files_on_disk_after_compact"] >= figures["live_files_after_compact"]
    assert not (data / "runs").exists()  # straight into the table: no inbox left behind
    res = run_cli("sql", "-q", "SELECT count(DISTINCT run_id) AS n, max(step) AS last FROM steps", "--data", data)
    assert res.returncode == 0, res.stderr
    n, last = (int(v) for v in res.stdout.strip().splitlines()[-2].strip("│ ").split("┆"))
    assert n == N_RUNS
    assert N_STEPS - CADENCE["log_every"] <= last < N_STEPS  # every run's 1,000 steps, logged every 10


def test_bad_sizes_are_one_line(tmp_path):
    bad = subprocess.run(
        [PYTHON, "-m", "gclab.bench.store", "--sizes", "0", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    one_error_line(bad)
    assert not (tmp_path / "bench_store.json").exists()

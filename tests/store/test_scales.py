"""One scale per sweep: the views never pool a demo-scale sweep with its full-size runs."""

import json

import pyarrow as pa
import pyarrow.parquet as pq

from gclab.store import db
from gclab.store.layout import RunFolder
from gclab.store.readonly import read_only_query
from gclab.store.schema import RUNS
from tests._helpers.cli import run_cli


def add(data, sweep, run_id, scale, *, old=False):
    f = RunFolder(data, sweep, run_id)
    f.start()
    f.write("steps", {"run_id": [run_id] * 2, "step": [0, 1], "gc": [1.0, 2.0]})
    row = {"run_id": run_id, "sweep": sweep, "status": "completed", "config_json": json.dumps({"scale": scale})}
    f.finish({**row, "scale": scale})
    if old:  # a run written before the scale column existed: its schema lacks it
        schema = pa.schema([fld for fld in RUNS if fld.name != "scale"])
        pq.write_table(pa.Table.from_pylist([row], schema=schema), f.path / "run.parquet")


def test_views_use_the_largest_scale_per_sweep(store_dir, capsys):
    add(store_dir, "fig5", "d1", "demo")
    add(store_dir, "fig5", "d2", "demo")
    add(store_dir, "fig5", "c1", "cpu", old=True)
    add(store_dir, "thm51", "t1", "demo")
    add(store_dir, "mine", "m1", None)
    with db.connect(store_dir) as con:
        runs = db.query(con, "SELECT run_id, scale FROM runs ORDER BY run_id").rows()
        steps = db.query(con, "SELECT DISTINCT run_id FROM steps ORDER BY run_id")["run_id"].to_list()
        every = db.query(con, "SELECT count(*) AS n FROM runs_all")["n"][0]
    assert runs == [("c1", "cpu"), ("m1", "cpu"), ("t1", "demo")]  # old run: its config_json; none: cpu
    assert steps == ["c1", "m1", "t1"] and every == 5
    err = capsys.readouterr().err
    assert "sweep fig5: analyses use its 1 cpu-scale runs" in err and "2 demo-scale runs left out" in err
    # ad-hoc SQL sees the same views
    assert read_only_query(store_dir, "SELECT count(*) AS n FROM runs")["n"][0] == 3
    assert read_only_query(store_dir, "SELECT count(*) AS n FROM steps")["n"][0] == 6


def test_gclab_command_lists_subcommands_and_imports_outside_the_checkout(tmp_path):
    import subprocess
    import sys

    res = run_cli("--help")
    assert res.returncode == 0
    for cmd in ("collect", "report", "claims", "sql", "bench", "check"):
        assert cmd in res.stdout
    out = subprocess.run(
        [sys.executable, "-c", "import gclab; print(gclab.Recorder, gclab.geometric_complexity)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0 and "gclab.collect.recorder.Recorder" in out.stdout, out.stderr

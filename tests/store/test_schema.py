"""The explicit schemas survive a round trip through Parquet and the DuckDB views."""

import math
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gclab.store import db
from gclab.store.check import inventory
from gclab.store.layout import RunFolder, to_arrow
from gclab.store.schema import FILE_NAMES, SCHEMAS, schema_markdown

KEY_COLUMNS = {
    "runs": "run_id sweep status seed dataset model width depth activation init optimizer lr momentum batch_size "
    "steps l2 spectral_reg flatness_reg gc_reg label_noise n_params device wall_s config_json",
    "steps": "run_id step lr batch_size train_loss train_acc gc grad_norm_sq residual_term label_alignment "
    "batch_alignment per_example_grad_norm_sq wall_s",
    "evals": "run_id step split loss acc gc param_norm_sq spectral_product dist_from_init bfd sharpness",
    "theorem": "run_id step split example gc_x grad_theta_sq transfer_sq_sum transfer_sq_sum_tight bound bound_tight "
    "holds_tight",
    "layers": "run_id step split example layer h_norm_sq weight_spec input_jac_spec transfer_sq",
    "probes": "run_id step t output",
}


def test_key_columns_present():
    for table, keys in KEY_COLUMNS.items():
        missing = set(keys.split()) - set(SCHEMAS[table].names)
        assert not missing, f"{table} lacks {missing}"


def sample_value(field, i):
    t = str(field.type)
    return {"string": f"v{i}", "double": 0.5 + i, "int64": 3 + i, "int32": 1 + i, "bool": i % 2 == 0}[t]


def test_round_trip_every_table(store_dir):
    rf = RunFolder(store_dir, "s1", "abc123")
    rf.start()
    written = {}
    for table, schema in SCHEMAS.items():
        cols = {f.name: [sample_value(f, i) for i in range(3)] for f in schema}
        cols["run_id"] = ["abc123"] * 3
        written[table] = cols
        if table != "runs":
            rf.write(table, cols)
    run_row = {k: v[0] for k, v in written["runs"].items()} | {"sweep": "s1"}
    rf.finish(run_row)
    # The file carries the explicit schema, not an inferred one.
    for table, name in FILE_NAMES.items():
        assert pq.read_schema(rf.path / name).remove_metadata() == SCHEMAS[table].remove_metadata()
    with db.connect(store_dir) as con:
        for table, cols in written.items():
            frame = db.query(con, f"SELECT * FROM {table} ORDER BY 1")
            n = 1 if table == "runs" else 3
            assert frame.height == n
            for name in SCHEMAS[table].names:
                got = frame[name].to_list()
                want = [run_row[name]] if table == "runs" else cols[name]
                assert got == want, (table, name)


def test_unknown_column_is_refused():
    with pytest.raises(KeyError, match="not in gclab/store/schema.py"):
        to_arrow("steps", {"run_id": ["a"], "gcc": [1.0]})


def test_missing_columns_are_null(store_dir):
    rf = RunFolder(store_dir, "s", "r1")
    rf.start()
    rf.write("steps", {"run_id": ["r1"], "step": [0]})
    rf.finish({"run_id": "r1", "sweep": "s", "status": "completed"})
    with db.connect(store_dir) as con:
        row = db.query(con, "SELECT gc, grad_norm_sq FROM steps").row(0)
    assert row == (None, None)


def test_empty_store_has_typed_views(store_dir):
    with db.connect(store_dir) as con:
        for table in SCHEMAS:
            assert db.query(con, f"SELECT count(*) AS n FROM {table}")["n"][0] == 0
        cols = db.query(con, "DESCRIBE steps")["column_name"].to_list()
    assert cols == SCHEMAS["steps"].names


def test_incomplete_runs_are_invisible(store_dir):
    for rid, finish in (("done", True), ("half", False)):
        rf = RunFolder(store_dir, "s", rid)
        rf.start()
        rf.write("steps", {"run_id": [rid] * 2, "step": [0, 1], "gc": [1.0, math.pi]})
        if finish:
            rf.finish({"run_id": rid, "sweep": "s", "status": "completed"})
    with db.connect(store_dir) as con:
        assert db.query(con, "SELECT DISTINCT run_id FROM steps")["run_id"].to_list() == ["done"]
        assert db.query(con, "SELECT run_id FROM runs")["run_id"].to_list() == ["done"]


def test_persistent_database_attachable_by_any_client(store_dir):
    rf = RunFolder(store_dir, "s", "r1")
    rf.start()
    rf.write("evals", {"run_id": ["r1"], "step": [5], "split": ["test"], "acc": [0.75]})
    rf.finish({"run_id": "r1", "sweep": "s", "status": "completed"})
    db.refresh(store_dir)
    import duckdb

    with duckdb.connect(str(store_dir / "runs.duckdb"), read_only=True) as con:
        assert con.sql("SELECT acc FROM evals").fetchall() == [(0.75,)]


def test_schema_doc_is_current():
    from pathlib import Path

    doc = Path(__file__).resolve().parents[2] / "docs" / "SCHEMA.md"
    assert doc.read_text() == schema_markdown() + "\n", "regenerate: python -m gclab.store.schema > docs/SCHEMA.md"


def test_schema_module_imports_nothing_heavy():
    code = (
        "import sys, gclab.store.schema; "
        "heavy = {'torch', 'duckdb', 'polars', 'pandas', 'scipy', 'gclab.store.db'} & set(sys.modules); "
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_a_store_written_before_probes_lost_x_still_reads(store_dir):
    """Older stores carry probes.x (a copy of t); their runs stay in the views and check finds no problem."""
    rows = {"step": [0, 0], "t": [-1.0, 1.0], "output": [0.25, 0.75], "output_index": [0, 0]}
    for rid, old in (("old", True), ("new", False)):
        rf = RunFolder(store_dir, "s", rid)
        rf.start()
        if old:
            table = to_arrow("probes", {"run_id": [rid] * 2, **rows}).append_column("x", pa.array(rows["t"]))
            pq.write_table(table, rf.stage / FILE_NAMES["probes"])  # before finish: the private folder
        else:
            rf.write("probes", {"run_id": [rid] * 2, **rows})
        rf.finish({"run_id": rid, "sweep": "s", "status": "completed"})
    inv = inventory(store_dir)
    assert not inv.problems and not inv.drift, (inv.problems, inv.drift)
    with db.connect(store_dir) as con:
        got = db.query(con, "SELECT run_id, t, output FROM probes ORDER BY run_id, t")
    assert got.rows() == [("new", -1.0, 0.25), ("new", 1.0, 0.75), ("old", -1.0, 0.25), ("old", 1.0, 0.75)]


def test_a_store_written_before_the_holds_rename_reads_holds_as_holds_tight(store_dir, capsys):
    # theorem.holds became holds_tight (gclab/store/schema.py RENAMED): one run written under the old
    # name, one under the new; every view reads both under the new name, with no drift warning.
    from gclab.store.check import inventory
    from gclab.store.readonly import read_only_query

    old = RunFolder(store_dir, "s", "old")
    old.start()
    old.finish({"run_id": "old", "sweep": "s", "status": "completed"})
    theorem = to_arrow("theorem", {"run_id": ["old"] * 2, "example": [0, 1], "holds_tight": [True, False]})
    pq.write_table(
        theorem.rename_columns(["holds" if n == "holds_tight" else n for n in theorem.column_names]),
        old.path / FILE_NAMES["theorem"],
    )
    new = RunFolder(store_dir, "s", "new")
    new.start()
    new.write("theorem", {"run_id": ["new"], "example": [0], "holds_tight": [False]})
    new.finish({"run_id": "new", "sweep": "s", "status": "completed"})
    assert "holds" in pq.read_schema(old.path / FILE_NAMES["theorem"]).names
    assert not inventory(store_dir).drift
    want = [("new", 0, False), ("old", 0, True), ("old", 1, False)]
    sql = "SELECT run_id, example, holds_tight FROM theorem ORDER BY run_id, example"
    with db.connect(store_dir) as con:
        assert db.query(con, sql).rows() == want
        cols = db.query(con, "DESCRIBE theorem")["column_name"].to_list()
    assert cols == SCHEMAS["theorem"].names + ["sweep"]
    assert read_only_query(store_dir, sql).rows() == want
    assert "holds" not in read_only_query(store_dir, "SELECT * FROM theorem").columns
    assert "drift" not in capsys.readouterr().err

"""Ad-hoc SQL is read-only: a writing statement fails in one line and no file changes."""

import pytest

from gclab.store import readonly
from gclab.store.layout import RunFolder
from gclab.store.schema import SCHEMAS
from tests._helpers.cli import run_cli, tree_bytes


@pytest.fixture
def filled(store_dir):
    for i in range(2):
        rf = RunFolder(store_dir, "demo", f"r{i}")
        rf.start()
        rf.write("steps", {"run_id": [f"r{i}"] * 4, "step": [0, 1, 2, 3], "train_loss": [4.0, 3.0, 2.0, 1.0]})
        rf.finish({"run_id": f"r{i}", "sweep": "demo", "status": "completed"})
    return store_dir


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM steps",
        "COPY steps TO 'x.parquet'",
        "DROP VIEW steps",
        "CREATE TABLE t AS SELECT 1",
        "INSERT INTO steps (run_id) VALUES ('x')",
        "ATTACH 'other.duckdb'",
        "SELECT 1; DELETE FROM steps",
        "INSTALL httpfs",
    ],
)
def test_writes_are_refused_and_files_untouched(filled, tmp_path, sql):
    before = tree_bytes(filled)
    res = run_cli("sql", "--data", filled, "-q", sql, cwd=tmp_path)
    assert res.returncode != 0
    err = res.stderr.strip()
    assert err.startswith("error:") and "\n" not in err and "Traceback" not in err
    assert tree_bytes(filled) == before
    assert not (tmp_path / "x.parquet").exists() and not (tmp_path / "other.duckdb").exists()


def test_count_query_prints_the_count(filled):
    res = run_cli("sql", "--data", filled, "-q", "SELECT count(*) AS n FROM steps")
    assert res.returncode == 0, res.stderr
    assert "8" in res.stdout.split("╞")[1]


def test_bad_sql_is_one_line(filled):
    res = run_cli("sql", "--data", filled, "-q", "SELECT nope FROM steps")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "nope" in res.stderr


def test_reads_are_allowed(filled):
    for sql in (
        "DESCRIBE steps",
        "SHOW TABLES",
        "EXPLAIN SELECT * FROM runs",
        "SUMMARIZE steps",
        "WITH a AS (SELECT max(step) AS m FROM steps) SELECT m FROM a",
    ):
        readonly.check_read_only(sql)
    assert readonly.read_only_query(filled, "SELECT max(step) AS m FROM steps")["m"][0] == 3


def test_listing_views_without_query(filled):
    res = run_cli("sql", "--data", filled)
    assert res.returncode == 0
    rows = [line.strip("│ ").split("┆") for line in res.stdout.splitlines() if line.count("┆") == 1]
    views = {view.strip() for view, _ in rows[3:]} - {""}  # past the header rows; "" continues a wrapped cell
    assert views == {*SCHEMAS, "runs_all"}
    assert "run_id VARCHAR, step BIGINT" in res.stdout

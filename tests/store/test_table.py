"""The Delta table behind the inbox (store.table, store.ingest): `gclab compact` and `gclab migrate`
leave every view equal row for row, re-records replace, claims are honoured, collect skips stored
runs, and `gclab check` verifies and quarantines the table's files."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable

from gclab.collect.runner import pending
from gclab.planted.frames import planted_batches
from gclab.planted.store import SWEEPS, sweep_runs, write_planted_store
from gclab.store import db
from gclab.store.claim import Claim
from gclab.store.ingest import inbox_size
from gclab.store.layout import RunFolder, runs_root
from gclab.store.location import parse
from gclab.store.readonly import read_only_query
from gclab.store.table import batch_tables, commit_tables, stored_runs, table_files
from tests._helpers.cli import run_cli

VIEWS = ("runs_all", "runs", "steps", "evals", "theorem", "layers", "probes", "fdim")
CADENCE = {"steps": 20, "log_every": 5, "eval_every": 10}
N_RUNS = 40


def snapshot(data: Path) -> dict[str, pl.DataFrame]:
    """Every view, sorted, through the command connection and through the SQL sandbox."""
    out = {}
    with db.connect(data, warn=False) as con:
        for view in VIEWS:
            out[view] = con.sql(f"SELECT * FROM {view} ORDER BY ALL").pl()
    for view in ("runs", "steps", "probes"):
        out[f"sandbox {view}"] = read_only_query(data, f"SELECT * FROM {view} ORDER BY ALL", max_rows=10**6)
    return out


def assert_same(a: dict[str, pl.DataFrame], b: dict[str, pl.DataFrame]) -> None:
    for view in a:
        assert a[view].columns == b[view].columns, view
        assert a[view].equals(b[view]), f"{view}: {a[view].height} rows before, {b[view].height} after"


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("planted") / "data"
    write_planted_store(data, n_runs=N_RUNS, cadence=CADENCE)
    return data


@pytest.fixture
def store(planted, tmp_path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(planted, data)
    return data


def test_compact_keeps_every_view(store):
    before = snapshot(store)
    assert before["theorem"].height and before["steps"].height  # the store exercises several tables
    claims = run_cli("claims", "--json", "--data", store)
    assert '"value": ' in claims.stdout, claims.stderr  # rows with numbers, whose sums could depend on row order
    res = run_cli("compact", "--data", store)
    assert res.returncode == 0, res.stderr
    # The same runs in other files (inbox folders → Delta files) give the same claims, digit for digit.
    assert run_cli("claims", "--json", "--data", store).stdout == claims.stdout
    assert inbox_size(data_dir=store) == 0 and not any(runs_root(store).glob("sweep=*/run_id=*"))
    assert sum(map(len, table_files(location=parse(store)).values())) >= 1
    assert_same(before, snapshot(store))
    assert set(stored_runs(location=parse(store)).column("run_id").to_pylist()) == set(before["runs_all"]["run_id"])
    # The shared DuckDB file other clients attach reads the same runs.
    import duckdb

    with duckdb.connect(str(store / db.DB_FILE), read_only=True) as con:
        assert con.sql("SELECT count(*) FROM steps").fetchall() == [(before["steps"].height,)]


def test_migrate_moves_folders_and_keeps_every_view(store):
    before = snapshot(store)
    folders = sorted(p.relative_to(store) for p in runs_root(store).glob("sweep=*/run_id=*"))
    res = run_cli("migrate", "--data", store)
    assert res.returncode == 0, res.stderr
    assert sorted(p.relative_to(store / "migrated") for p in (store / "migrated").glob("runs/*/*")) == folders
    assert inbox_size(data_dir=store) == 0
    assert_same(before, snapshot(store))


def _rerecord(store: Path, run_id: str, sweep: str, status: str, n: int) -> None:
    rf = RunFolder(store, sweep, run_id)
    rf.start()
    rf.write("steps", {"run_id": [run_id] * n, "step": list(range(n)), "gc": [2.0] * n})
    rf.finish({"run_id": run_id, "sweep": sweep, "status": status})


def test_rerecord_replaces_never_doubles(store):
    assert run_cli("compact", "--data", store).returncode == 0
    row = snapshot(store)["runs_all"].row(0, named=True)
    run_id, sweep = row["run_id"], row["sweep"]
    _rerecord(store, run_id, sweep, "failed", 3)  # in the inbox: newer than the table, so it wins
    for _ in range(2):  # before and after its commit
        with db.connect(store, warn=False) as con:
            assert con.sql(f"SELECT status FROM runs_all WHERE run_id = '{run_id}'").fetchall() == [("failed",)]
            assert con.sql(f"SELECT count(*) FROM steps WHERE run_id = '{run_id}'").fetchall() == [(3,)]
            assert con.sql(f"SELECT count(*) FROM evals WHERE run_id = '{run_id}'").fetchall() == [(0,)]
            n_runs = con.sql("SELECT count(*), count(DISTINCT run_id) FROM runs_all").fetchall()[0]
            assert n_runs == (N_RUNS, N_RUNS)
        assert run_cli("compact", "--data", store).returncode == 0
    assert stored_runs(location=parse(store)).column("run_id").to_pylist().count(run_id) == 1
    one = stored_runs(location=parse(store), run_ids=[run_id, "no-such-run"])  # filtered in the scan
    assert one.to_pylist() == [{"run_id": run_id, "sweep": sweep, "status": "failed"}]
    assert stored_runs(location=parse(store), run_ids=[]).num_rows == 0


def test_compact_skips_a_claimed_run(store):
    before = snapshot(store)
    held = next(runs_root(store).glob("sweep=*/run_id=*"))
    claim = Claim(store, held.parent.name.split("=", 1)[1], held.name.split("=", 1)[1])
    assert claim.acquire()
    try:
        assert run_cli("compact", "--data", store).returncode == 0
        assert [p for p in runs_root(store).glob("sweep=*/run_id=*")] == [held]
        assert_same(before, snapshot(store))
    finally:
        claim.release()
    assert run_cli("compact", "--data", store).returncode == 0
    assert inbox_size(data_dir=store) == 0
    assert_same(before, snapshot(store))


def test_collect_skips_runs_in_the_table(store):
    configs = [c for s in SWEEPS for c in sweep_runs(s, cadence=CADENCE)]
    before = {c.run_id for c in pending(configs, store)}
    assert run_cli("compact", "--data", store).returncode == 0
    assert {c.run_id for c in pending(configs, store)} == before
    assert len(before) < len(configs)


def test_check_quarantines_a_bad_table_file(store):
    before = snapshot(store)
    assert run_cli("compact", "--data", store).returncode == 0
    assert run_cli("check", "--data", store).returncode == 0
    victim = Path(table_files(location=parse(store))["steps"][0])
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # a flipped byte in a data page
    victim.write_bytes(bytes(raw))
    res = run_cli("check", "--data", store)
    assert res.returncode == 1 and victim.name in res.stdout
    res = run_cli("check", "--data", store, "--repair")
    assert res.returncode == 0, res.stdout + res.stderr
    assert (store / "quarantine" / "delta" / victim.relative_to(store / "delta")).exists()  # moved, not deleted
    assert run_cli("check", "--data", store).returncode == 0
    after = snapshot(store)
    kept = set(after["runs_all"]["run_id"])
    assert kept < set(before["runs_all"]["run_id"])  # the runs it held part of are gone, to be re-run
    for view in VIEWS:  # every run left is whole (a view left empty has no rows to compare)
        if after[view].height:
            assert_same({view: before[view].filter(pl.col("run_id").is_in(kept))}, {view: after[view]})
        assert after[view]["run_id"].is_in(kept).all()
    assert DeltaTable(str(store / "delta")).version() > 0


def test_readme_states_the_compaction_threshold():
    from gclab.store.ingest import COMPACT_AT
    from tests._helpers.cli import ROOT

    assert f"`COMPACT_AT` = {COMPACT_AT}" in (ROOT / "README.md").read_text()


def test_collect_ingests_once_the_inbox_is_full(store, monkeypatch):
    import gclab.store.ingest as ingest
    from gclab.collect.runner import ingest_if_full

    before = snapshot(store)
    monkeypatch.setattr(ingest, "COMPACT_AT", inbox_size(data_dir=store) + 1)
    ingest_if_full(data=store)
    assert inbox_size(data_dir=store) == N_RUNS and not (store / "delta").exists()  # a small store stays as folders
    monkeypatch.setattr(ingest, "COMPACT_AT", inbox_size(data_dir=store))
    ingest_if_full(data=store)
    assert inbox_size(data_dir=store) == 0
    assert_same(before, snapshot(store))


def test_shared_db_lists_absolute_paths_for_a_relative_data(store):
    assert run_cli("compact", "--data", store.name, cwd=store.parent).returncode == 0
    assert run_cli("sql", "--data", store.name, "-q", "SELECT 1", cwd=store.parent).returncode == 0
    import duckdb

    with duckdb.connect(str(store / db.DB_FILE), read_only=True) as con:
        assert con.sql("SELECT count(*) FROM runs_all").fetchall() == [(N_RUNS,)]


def test_a_commit_is_bounded_by_the_bytes_of_its_runs(store, monkeypatch):
    import gclab.store.ingest as ingest

    before = snapshot(store)
    monkeypatch.setattr(ingest, "BATCH_BYTES", 1)  # every run is over it: one run per commit
    ingest.ingest(location=parse(store), say=lambda _: None)
    assert DeltaTable(str(store / "delta")).version() == N_RUNS - 1  # versions count from 0
    assert_same(before, snapshot(store))


def test_commit_tables_rows_read_back_equal_the_frames(tmp_path):
    """`commit_tables` commits in-memory frames (the store bench's builder) as the views then show
    them, and the frames equal what `batch_tables` reads from the same runs' folders."""
    kw = {"sweeps": SWEEPS, "n_runs": 12, "cadence": CADENCE}
    (frames,) = planted_batches(batch=12, **kw)
    folders = tmp_path / "folders"
    write_planted_store(folders, **kw)
    from_folders = batch_tables(run_dirs=sorted(runs_root(folders).glob("sweep=*/run_id=*")))
    assert set(frames) == set(from_folders)
    for name, frame in frames.items():
        assert pl.DataFrame(frame).sort(pl.all()).equals(pl.DataFrame(from_folders[name]).sort(pl.all())), name
    data = tmp_path / "data"
    for _ in range(2):  # the second commit replaces the same runs: nothing doubles
        assert len(commit_tables(location=parse(data), tables=frames)) == 12
    with db.connect(data, warn=False) as con:
        for name, frame in frames.items():
            view = "runs_all" if name == "runs" else name  # `runs` hides failed runs; runs_all has every row
            got = con.sql(f"SELECT {', '.join(frame.column_names)} FROM {view}").pl()
            assert got.sort(pl.all()).equals(pl.DataFrame(frame).sort(pl.all())), name

"""SIGKILL during compaction, and around the one commit that makes a batch of runs visible: nothing
stored is lost or doubled (every view equal row for row, every run's row count per table unchanged),
and the next `gclab sql` and `gclab compact` answer.

The kill points are set by a wrapper process that patches the step named (before or after its n-th
call), or watches the table folder and kills the moment a new data file appears (mid-commit,
mid-optimize): gclab's own code carries no test hook."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gclab.planted.store import write_planted_store
from gclab.store.ingest import inbox_size
from tests._helpers.cli import ROOT, run_cli
from tests.store.test_table import CADENCE, VIEWS, assert_same, snapshot

KILLER = r"""
import os, signal, sys, threading, time
from pathlib import Path
import deltalake.table
import gclab.store.ingest as ingest
import gclab.store.table as table
from gclab.store.location import parse

data, point = sys.argv[1], sys.argv[2]
ingest.BATCH = 8  # several commits per ingest: kills land between them too


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def files():
    return set((Path(data) / "delta").rglob("*.parquet"))


def kill_on_new_file():
    known = files()
    def watch():
        while not (files() - known):
            time.sleep(0.0005)
        die()
    threading.Thread(target=watch, daemon=True).start()


def patch(obj, name, when, nth):
    orig = getattr(obj, name)
    calls = [0]
    def wrapped(*a, **k):
        calls[0] += 1
        if calls[0] == nth and when == "before":
            die()
        if calls[0] == nth and when == "during":
            kill_on_new_file()
        out = orig(*a, **k)
        if calls[0] == nth and when == "after":
            die()
        return out
    setattr(obj, name, wrapped)


targets = {
    "commit": (table, "write_deltalake"),
    "verify": (ingest, "_verify_committed"),
    "drop": (ingest, "_drop"),
    "rmtree": (ingest.shutil, "rmtree"),
    "optimize": (deltalake.table.TableOptimizer, "compact"),
    "checkpoint": (deltalake.table.DeltaTable, "create_checkpoint"),
    "vacuum": (deltalake.table.DeltaTable, "vacuum"),
}
step, when, nth = point.split(":")
patch(*targets[step], when, int(nth))
ingest.compact(location=parse(data))
"""


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("planted") / "data"
    write_planted_store(data, n_runs=24, cadence=CADENCE)
    return data


def per_run_counts(snap) -> dict[tuple[str, str], int]:
    out = {}
    for view in VIEWS:
        for run_id, n in snap[view].group_by("run_id").len().iter_rows():
            out[(view, run_id)] = n
    return out


def kill_at(data: Path, point: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, str(data), point],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -9, f"the kill at {point} did not land: {proc.returncode} {proc.stderr[-2000:]}"


def assert_whole_and_next_commands_answer(data: Path, before) -> None:
    after = snapshot(data)
    assert per_run_counts(after) == per_run_counts(before)  # nothing lost, nothing doubled, no partial run
    assert_same(before, after)
    res = run_cli("sql", "--data", data, "-q", "SELECT count(*) AS n FROM steps")
    assert res.returncode == 0, res.stderr
    res = run_cli("compact", "--data", data)
    assert res.returncode == 0, res.stderr
    assert inbox_size(data_dir=data) == 0
    assert_same(before, snapshot(data))


@pytest.mark.parametrize(
    "point",
    [
        "verify:before:1",  # committed, not yet read back
        "drop:after:3",  # part of a batch's folders out of the inbox
        "rmtree:before:1",  # a folder renamed out of the inbox, not yet removed
        "commit:after:2",  # between two batches
        "optimize:during:1",  # optimize writing its new files
        "optimize:after:1",  # optimize committed, no checkpoint yet
        "checkpoint:after:1",
        "vacuum:before:1",
    ],
)
def test_sigkill_during_compaction(planted, tmp_path, point):
    data = tmp_path / "data"
    shutil.copytree(planted, data)
    before = snapshot(data)
    kill_at(data, point)
    assert_whole_and_next_commands_answer(data, before)


@pytest.mark.parametrize("point", ["commit:before:1", "commit:during:1", "commit:during:2", "commit:after:1"])
def test_sigkill_around_a_batch_commit_leaves_no_partial_run(planted, tmp_path, point):
    """A batch's seven tables are one Delta commit: killed before, inside or after it, every run is
    either still only in the inbox or whole in the table, never in some tables and not others."""
    data = tmp_path / "data"
    shutil.copytree(planted, data)
    before = snapshot(data)
    kill_at(data, point)
    assert_whole_and_next_commands_answer(data, before)

"""Writers on object storage (gclab/store/writer.py) against a loopback S3 server: a Recorder block
commits its run to the Delta table whole when it ends, a second writer of the run is refused while
the first holds its lease, and a writer killed mid-run has committed nothing."""

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pyarrow.compute as pc
import pytest
import torch
from torch import nn

from gclab.collect.recorder import Recorder
from gclab.store.claim import ClaimTaken
from gclab.store.lease import Lease
from gclab.store.location import parse
from gclab.store.table import exists, row_counts, stored_runs, table_files
from gclab.store.writer import StagedRun
from tests._helpers.cli import ROOT, run_cli

STEPS = 4


def _record(data: str, config: dict) -> Recorder:
    torch.manual_seed(0)
    model, x, y = nn.Linear(4, 3), torch.randn(8, 4), torch.randint(0, 3, (8,))
    with Recorder(data, "mine", config) as rec:
        for step in range(STEPS):
            rec.step(step, model, x, y)
    return rec


def test_recorder_commits_its_run_whole(s3, s3_uri):
    rec = _record(s3_uri, {"lr": 0.1})
    location = parse(s3_uri)
    runs = stored_runs(location=location)
    assert runs.column("run_id").to_pylist() == [rec.run_id]
    assert runs.column("status").to_pylist() == ["completed"]
    counts = row_counts(location=location, run_ids=[rec.run_id], files=table_files(location=location))
    assert counts[("runs", rec.run_id)] == 1
    assert counts[("steps", rec.run_id)] == STEPS
    bucket = s3_uri.split("/")[2]
    assert not [k for k in s3.keys(bucket) if "/claims/" in k]  # the lease is released


def test_recording_again_replaces_the_run(s3_uri):
    first = _record(s3_uri, {"lr": 0.1})
    again = _record(s3_uri, {"lr": 0.1})
    other = _record(s3_uri, {"lr": 0.2})
    runs = stored_runs(location=parse(s3_uri))
    ids = runs.column("run_id").to_pylist()
    assert first.run_id == again.run_id
    assert sorted(ids) == sorted([first.run_id, other.run_id])
    steps = row_counts(location=parse(s3_uri), run_ids=ids, files=table_files(location=parse(s3_uri)))
    assert steps[("steps", first.run_id)] == STEPS


SECOND = textwrap.dedent(
    """
    import sys
    from gclab.collect.recorder import Recorder
    from gclab.store.claim import ClaimTaken
    try:
        with Recorder(sys.argv[1], "mine", {"lr": 0.3}):
            print("recorded")
    except ClaimTaken as exc:
        print(f"refused: {exc}")
    """
)


def _python(script: str, *args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        **kw,
    )


def test_second_writer_is_refused_while_the_first_holds_the_run(s3_uri):
    with Recorder(s3_uri, "mine", {"lr": 0.3}) as rec:
        out, _ = _python(SECOND, s3_uri).communicate(timeout=300)
        assert out.startswith("refused: ") and f" {os.getpid()} " in out, out
        rec.annotate(n_train=8)
    assert stored_runs(location=parse(s3_uri)).column("run_id").to_pylist() == [rec.run_id]


KILLED = textwrap.dedent(
    """
    import sys, torch
    from torch import nn
    from gclab.collect.recorder import Recorder
    model, x, y = nn.Linear(4, 3), torch.randn(8, 4), torch.randint(0, 3, (8,))
    rec = Recorder(sys.argv[1], "mine", {"lr": 0.4})
    rec.folder.claim.ttl = 1.0  # short, so that the test can take the run over
    with rec:
        rec.step(0, model, x, y)
        print("recording", flush=True)
        sys.stdin.read()  # killed here, mid-run
    """
)


def test_killed_writer_commits_nothing(s3_uri):
    proc = _python(KILLED, s3_uri)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "recording"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    location = parse(s3_uri)
    assert not exists(location=location)  # not even an empty table: nothing was committed
    again = Recorder(s3_uri, "mine", {"lr": 0.4})
    assert isinstance(again.folder, StagedRun)
    run_id, prefix = again.run_id, again.folder.staging_prefix
    leftovers = lambda: list(Path(tempfile.gettempdir()).glob(f"{prefix}*"))  # noqa: E731
    assert len(leftovers()) == 1  # the killed writer's staging folder
    time.sleep(2.5)  # its lease expires
    kept = _record(s3_uri, {"lr": 0.4})
    assert kept.run_id == run_id and leftovers() == []  # the next writer of the run removed it
    ids = stored_runs(location=location).column("run_id")
    assert pc.count(ids).as_py() == 1 and ids[0].as_py() == kept.run_id


def test_a_writer_whose_lease_was_taken_over_commits_nothing(s3_uri):
    torch.manual_seed(0)
    model, x, y = nn.Linear(4, 3), torch.randn(8, 4), torch.randint(0, 3, (8,))
    rec = Recorder(s3_uri, "mine", {"lr": 0.6})
    lease = rec.folder.claim
    assert isinstance(lease, Lease)
    lease.ttl = 1.0
    taker = None
    try:
        with pytest.raises(ClaimTaken, match="another writer took the run"):
            with rec:
                rec.step(0, model, x, y)
                lease._stop.set()  # no more heartbeats: this process is as if stopped past its TTL
                time.sleep(2.5)  # the lease is older than its TTL by the server's clock
                taker = subprocess.Popen(
                    [sys.executable, "-m", "tests._helpers.lease_holder", s3_uri, "mine", rec.run_id, "60"],
                    cwd=ROOT,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                )
                assert taker.stdout is not None and taker.stdout.readline().strip() == "held"
        assert not exists(location=parse(s3_uri))  # the taker's run is the one to be stored; ours is dropped
    finally:
        if taker is not None:
            taker.communicate("", timeout=60)
            assert taker.returncode == 0  # the taker kept the run it took over until it let go


def test_compact_on_s3_keeps_every_run_once(s3_uri):
    recorded = sorted(_record(s3_uri, {"lr": lr}).run_id for lr in (0.7, 0.8, 0.9))
    files_before = table_files(location=parse(s3_uri))
    before = row_counts(location=parse(s3_uri), run_ids=recorded, files=files_before)
    res = run_cli("compact", "--data", s3_uri)
    assert res.returncode == 0, res.stderr
    location = parse(s3_uri)
    assert sorted(stored_runs(location=location).column("run_id").to_pylist()) == recorded
    assert row_counts(location=location, run_ids=recorded, files=table_files(location=location)) == before
    n_files = {t: len(f) for t, f in table_files(location=location).items()}
    assert n_files["runs"] == 1 < len(files_before["runs"]) == 3  # one commit per run, then one file

"""A writer killed with SIGKILL mid-write never leaves a file that breaks the views."""

import os
import signal
import subprocess
import sys
import time

from gclab.store import db
from gclab.store.check import inventory
from gclab.store.layout import RunFolder
from tests._helpers.cli import ROOT, run_cli

WRITER = """
import sys, numpy as np
from gclab.store.layout import RunFolder
data = sys.argv[1]
rf = RunFolder(data, "demo", "victim"); rf.start()
n = 3_000_000  # big enough that writing takes a while
while True:  # rewrite forever: the kill lands mid-write
    rf.write("steps", {"run_id": np.repeat("victim", n), "step": np.arange(n), "gc": np.random.rand(n)})
"""


def test_sigkill_mid_write_leaves_store_readable(store_dir):
    done = RunFolder(store_dir, "demo", "survivor")
    done.start()
    done.write("steps", {"run_id": ["survivor"], "step": [0], "gc": [1.0]})
    done.finish({"run_id": "survivor", "sweep": "demo", "status": "completed"})

    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(store_dir)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    folder = RunFolder(store_dir, "demo", "victim").stage  # where the writer's files go until finish
    deadline = time.time() + 120
    # Wait until a temporary file exists, i.e. the writer is inside a write.
    while not any(p.name.startswith(".steps.parquet.tmp") for p in folder.glob(".*")):
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert any(p.name.startswith(".steps.parquet.tmp") for p in folder.glob(".*")), "kill should land mid-write"

    assert set(inventory(store_dir).runs) == {"survivor"}
    with db.connect(store_dir) as con:
        assert db.query(con, "SELECT DISTINCT run_id FROM steps")["run_id"].to_list() == ["survivor"]
    res = run_cli("sql", "--data", store_dir, "-q", "SELECT count(*) AS n FROM steps")
    assert res.returncode == 0 and "Traceback" not in res.stderr
    # The next writer of that run starts it afresh: the killed writer's files are gone.
    again = RunFolder(store_dir, "demo", "victim")
    again.start()
    assert list(folder.iterdir()) == []
    again.abandon()

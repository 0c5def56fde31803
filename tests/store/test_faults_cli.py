"""Every fault class of the store's guarantees (README "What the store guarantees"), driven
through the real CLI: the exit code, a one-line message without traceback, and the sha256 of
every Parquet file before and after."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from gclab.store.layout import RunFolder
from tests._helpers.cli import PYTHON, ROOT, run_cli

N_STEPS = 100


def digests(data: Path) -> dict[str, str]:
    return {
        str(p.relative_to(data)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(data.rglob("*.parquet"))
        if p.is_file()
    }


def add_run(data: Path, run_id: str, sweep: str = "demo", n: int = N_STEPS) -> Path:
    rf = RunFolder(data, sweep, run_id)
    rf.start()
    rf.write("steps", {"run_id": [run_id] * n, "step": list(range(n)), "gc": [1.0] * n})
    rf.write("evals", {"run_id": [run_id], "step": [0], "split": ["test"], "acc": [0.5]})
    rf.finish({"run_id": run_id, "sweep": sweep, "status": "completed"})
    return rf.path


@pytest.fixture
def store(tmp_path) -> Path:
    data = tmp_path / "data"
    for i in range(3):
        add_run(data, f"r{i}")
    return data


def one_error(res, code: int = 2) -> str:
    assert res.returncode == code, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if not ln.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    return lines[0]


def warnings(res) -> list[str]:
    assert "Traceback" not in res.stderr, res.stderr
    return [ln for ln in res.stderr.splitlines() if ln.startswith("warning:")]


def sql(data: Path, q: str, *extra, **kw):
    return run_cli("sql", "--data", data, "-q", q, *extra, **kw)


def count(res) -> int:
    assert res.returncode == 0, res.stderr
    return int(res.stdout.split("╞")[1].split("│")[1].strip())


# --- 1. Read-only by construction -------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "EXPLAIN COPY (SELECT 1 AS run_id) TO '{target}' (FORMAT parquet)",
        "EXPLAIN ANALYZE COPY (SELECT 1 AS run_id) TO '{target}' (FORMAT parquet)",
        "/* hidden */ EXPLAIN ANALYZE (FORMAT json) COPY steps TO '{target}'",
        "EXPLAIN ANALYZE INSERT INTO steps (run_id) VALUES ('x')",
        "EXPLAIN ANALYZE COPY (SELECT 'x') TO '{db}' (FORMAT csv)",
        "EXPLAIN ANALYZE CREATE TABLE t AS SELECT 1",
        "EXPLAIN UPDATE steps SET gc = 0",
    ],
)
def test_explain_wrapped_writes_are_refused(store, tmp_path, template):
    target = store / "runs" / "sweep=demo" / "run_id=r0" / "steps.parquet"
    run_cli("sql", "--data", store)  # creates runs.duckdb
    db_file = store / "runs.duckdb"
    before, db_before = digests(store), db_file.read_bytes()
    res = sql(store, template.format(target=target, db=db_file), cwd=tmp_path)
    assert "read-only" in one_error(res)
    assert digests(store) == before and db_file.read_bytes() == db_before


def test_sandbox_cannot_write_even_past_the_check(store, tmp_path):
    """The statement check is not the only guard: DuckDB itself may open no file."""
    from gclab.store.readonly import sandbox

    target = store / "runs" / "sweep=demo" / "run_id=r0" / "steps.parquet"
    before = digests(store)
    with sandbox(store, warn=False) as con:
        assert con.sql("SELECT count(*) FROM steps").fetchall()[0][0] == 3 * N_STEPS
        for stmt in (
            f"COPY steps TO '{target}'",
            f"COPY steps TO '{tmp_path / 'x.csv'}'",
            f"ATTACH '{tmp_path / 'x.duckdb'}'",
            "INSTALL httpfs",
            "SET enable_external_access = true",
            "SELECT * FROM read_csv('https://example.com/a.csv')",
            "SELECT * FROM read_text('/etc/hostname')",
        ):
            with pytest.raises(duckdb.Error):
                con.sql(stmt)
    assert digests(store) == before and not list(tmp_path.glob("x.*"))


# --- 2. Views never stale ---------------------------------------------------------------------

HOLDER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print(con.sql("SELECT count(*) FROM runs").fetchall()[0][0], flush=True)
sys.stdin.readline()
print(con.sql("SELECT count(*) FROM runs").fetchall()[0][0], flush=True)
"""


def test_reader_holding_runs_duckdb_does_not_make_views_stale(store):
    assert count(sql(store, "SELECT count(*) AS n FROM runs")) == 3
    holder = subprocess.Popen(
        [PYTHON, "-c", HOLDER, str(store / "runs.duckdb")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "3"  # it holds the file open (and locked)
        for i in range(3, 6):
            add_run(store, f"r{i}")
        res = sql(store, "SELECT count(*) AS n FROM runs")
        assert count(res) == 6 and warnings(res) == []
        res = sql(store, "SELECT count(DISTINCT run_id) AS n FROM steps")
        assert count(res) == 6
        # Other clients attaching runs.duckdb now see the new views too.
        with duckdb.connect(str(store / "runs.duckdb"), read_only=True) as con:
            assert con.sql("SELECT count(*) FROM runs").fetchall()[0][0] == 6
        claims = run_cli("claims", "--data", store, "--json")
        assert claims.returncode == 0 and warnings(claims) == [], claims.stderr
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "3"  # the holder keeps its own consistent snapshot
    finally:
        holder.kill()
        holder.wait()


def test_unrefreshable_runs_duckdb_is_one_line_and_answers_fresh(store):
    (store / "runs.duckdb").mkdir()  # cannot be replaced by a file
    add_run(store, "r3")
    res = sql(store, "SELECT count(*) AS n FROM runs")
    assert count(res) == 4
    w = warnings(res)
    assert len(w) == 1 and "could not refresh" in w[0] and str(store / "runs.duckdb") in w[0]


# --- 3. One run, one folder -------------------------------------------------------------------


def test_backups_copies_and_strays_are_left_out_with_one_line_each(store):
    before = digests(store)
    src = store / "runs" / "sweep=demo" / "run_id=r1"
    shutil.copytree(src, src.with_name("run_id=r1.bak"))
    shutil.copytree(src, store / "runs" / "sweep=other" / "run_id=r1")
    (store / "runs" / "stray").mkdir()
    (store / "runs" / "sweep=demo" / "notes.txt").write_text("x")
    res = sql(store, "SELECT count(*) AS n FROM runs")
    assert count(res) == 3
    w = warnings(res)
    assert len(w) == 4
    for name in ("run_id=r1.bak:", "sweep=other/", "runs/stray:", "notes.txt:"):
        assert sum(name in line for line in w) == 1, (name, w)
    assert count(sql(store, "SELECT count(*) AS n FROM steps")) == 3 * N_STEPS
    for path, digest in before.items():
        assert digests(store)[path] == digest


def corrupt_metadata(path: Path) -> None:
    """Overwrite the middle of the footer's metadata, leaving both magics and its length intact."""
    raw = bytearray(path.read_bytes())
    footer_len = int.from_bytes(raw[-8:-4], "little")
    start = len(raw) - 8 - footer_len
    raw[start + 4 : start + footer_len - 4] = b"\xff" * (footer_len - 8)
    path.write_bytes(bytes(raw))


def drop_column(path: Path, column: str) -> None:
    table = pq.read_table(path)
    pq.write_table(table.drop_columns([column]), path)


@pytest.mark.parametrize("damage", ["metadata", "data page", "truncated", "directory"])
def test_a_file_failing_to_read_leaves_its_run_out(store, damage):
    bad = store / "runs" / "sweep=demo" / "run_id=r1" / "steps.parquet"
    if damage == "metadata":
        corrupt_metadata(bad)
    elif damage == "data page":
        raw = bytearray(bad.read_bytes())
        raw[20] ^= 0xFF  # inside the first column chunk: caught by the page checksum
        bad.write_bytes(bytes(raw))
    elif damage == "truncated":
        bad.write_bytes(bad.read_bytes()[:-20])
    else:
        bad.unlink()
        bad.mkdir()
    before = digests(store)
    res = sql(store, "SELECT count(DISTINCT run_id) AS n FROM steps")
    assert count(res) == 2
    w = warnings(res)
    assert len(w) == 1 and str(bad) in w[0]
    assert count(sql(store, "SELECT count(*) AS n FROM runs")) == 2  # the whole run, not one table of it
    claims = run_cli("claims", "--data", store, "--json")
    assert claims.returncode == 0 and len(warnings(claims)) == 1
    assert digests(store) == before


@pytest.mark.skipif(os.geteuid() == 0 and not shutil.which("setpriv"), reason="root reads everything")
def test_unreadable_run_folder_is_left_out(tmp_path):
    data = tmp_path / "shared" / "data"
    for i in range(2):
        add_run(data, f"r{i}")
    locked = data / "runs" / "sweep=demo" / "run_id=r1"
    locked.chmod(0)
    os.chmod(tmp_path, 0o755)
    prefix = []
    if os.geteuid() == 0:  # as root, read as nobody
        for p in [tmp_path, *tmp_path.parents]:
            os.chmod(p, os.stat(p).st_mode | 0o005) if p != Path("/") else None
        for p in data.rglob("*"):
            if p != locked and not str(p).startswith(str(locked)):
                p.chmod(p.stat().st_mode | 0o007)
        data.chmod(0o777)
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    try:
        res = subprocess.run(
            [*prefix, PYTHON, "-m", "gclab", "sql", "--data", str(data), "-q", "SELECT count(*) AS n FROM runs"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            timeout=300,
        )
        assert count(res) == 1
        w = warnings(res)
        assert any(str(locked) in line and "unreadable" in line for line in w), w
    finally:
        locked.chmod(0o755)


# --- 4. make check ----------------------------------------------------------------------------


def test_check_finds_corrupt_metadata_and_drift_and_repair_quarantines(store):
    clean = run_cli("check", "--data", store)
    assert clean.returncode == 0 and "3 runs verified, 0 problems" in clean.stdout
    corrupt_metadata(store / "runs" / "sweep=demo" / "run_id=r1" / "evals.parquet")
    drop_column(store / "runs" / "sweep=demo" / "run_id=r2" / "steps.parquet", "gc")
    before = digests(store)
    # Drift is served but never silent: one warning line in sql, claims and report alike.
    res = sql(store, "SELECT count(*) AS n FROM runs")
    assert count(res) == 2
    assert sum("schema drift" in line and "gc" in line for line in warnings(res)) == 1
    res = run_cli("check", "--data", store)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "run_id=r1" in res.stdout and "unreadable" in res.stdout
    assert "run_id=r2" in res.stdout and "schema drift" in res.stdout and "lacks gc" in res.stdout
    assert digests(store) == before
    res = run_cli("check", "--data", store, "--repair")
    assert res.returncode == 0, res.stdout + res.stderr
    quarantined = store / "quarantine" / "sweep=demo"
    assert sorted(p.name for p in quarantined.iterdir()) == ["run_id=r1", "run_id=r2"]
    # Moved, not deleted: the same bytes, under quarantine/.
    moved = {k.replace("quarantine/", "runs/"): v for k, v in digests(store).items() if k.startswith("quarantine")}
    assert moved == {k: v for k, v in before.items() if "r1" in k or "r2" in k}
    assert run_cli("check", "--data", store).returncode == 0


def test_check_on_a_missing_store_is_one_line(tmp_path):
    assert "not a folder" in one_error(run_cli("check", "--data", tmp_path / "nope"))


# --- 6. Bounded queries -----------------------------------------------------------------------


@pytest.fixture
def big(tmp_path) -> Path:
    data = tmp_path / "data"
    for i in range(2):
        add_run(data, f"b{i}", n=3000)
    return data


CROSS = "SELECT count(*) AS n FROM steps a, steps b, steps c WHERE a.step + b.step + c.step = -1"


def test_ctrl_c_stops_a_runaway_cross_join(big):
    proc = subprocess.Popen(
        [PYTHON, "-m", "gclab", "sql", "--data", str(big), "-q", CROSS],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stderr.readline()  # printed once the query has run for a while
    assert "query running" in line, line
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.strip() == "error: query interrupted (Ctrl-C); nothing was changed"


def test_time_limit_and_memory_limit_are_one_line_and_overridable(big):
    assert "time limit of 1 s" in one_error(sql(big, CROSS, "--timeout", "1"))
    oom = "SELECT count(DISTINCT (a.step, b.step, a.run_id)) AS n FROM steps a, steps b"
    assert "--memory-limit" in one_error(sql(big, oom, "--memory-limit", "20MB"))


def test_only_printed_rows_plus_one_are_fetched(big):
    res = sql(big, "SELECT * FROM steps a, steps b", "--max-rows", "5")
    assert res.returncode == 0, res.stderr
    assert "more rows: only the first 5" in res.stdout
    res = sql(big, "SELECT * FROM steps LIMIT 5", "--max-rows", "5")
    assert res.returncode == 0 and "more rows" not in res.stdout


# --- 7. Preflight of collect ------------------------------------------------------------------

PREFLIGHT = {
    "l2 inf": ("[base]\nl2 = inf\n", (), "finite"),
    "set l2 inf": ("[base]\nsteps = 1\n", ("--set", "l2=inf"), "finite"),
    "nan lr": ("[base]\nlr = nan\n", (), "finite"),
    "absurd width": ("[base]\nwidth = 10000000\n", (), "parameters"),
    "huge grid": (
        "seeds = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n[grid]\n"
        + "\n".join(
            f"{k} = [{', '.join(str(v) for v in range(1, 11))}]"
            for k in ("width", "depth", "batch_size", "log_every", "eval_every")
        )
        + "\n",
        (),
        "1,000,000 runs",
    ),
    "base is a number": ("base = 5\n", (), "base = 5 has the wrong shape"),
    "grid is a list": ("grid = [1, 2]\n", (), "grid"),
    "empty seeds": ("seeds = []\n", (), "seeds = [] runs nothing"),
    "set empty seeds": ("", ("--set", "seeds=[]"), "seeds = [] runs nothing"),
    "not utf-8": (b'description = "caf\xe9"\n', (), "not UTF-8"),
    "cuda": ('[base]\ndevice = "cuda"\n', (), "CUDA is not available"),
}


@pytest.mark.parametrize("case", list(PREFLIGHT))
def test_preflight_refuses_before_writing(store, tmp_path, case):
    body, extra, needle = PREFLIGHT[case]
    if case == "cuda":
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    f = tmp_path / "bad.toml"
    (f.write_bytes if isinstance(body, bytes) else f.write_text)(body)
    before, names = digests(store), sorted(p.name for p in store.rglob("*"))
    res = run_cli("collect", "--sweep", f, "--data", store, *extra, timeout=120)
    assert needle in one_error(res)
    assert digests(store) == before and sorted(p.name for p in store.rglob("*")) == names


def test_allow_huge_lifts_the_grid_bound(tmp_path):
    f = tmp_path / "wide.toml"
    f.write_text("seeds = [0, 1]\n[grid]\nlr = [" + ", ".join(f"0.{i:04d}1" for i in range(5001)) + "]\n")
    assert "10,000" in one_error(run_cli("collect", "--sweep", f, "--list", "--data", tmp_path / "d"))
    res = run_cli("collect", "--sweep", f, "--list", "--allow-huge", "--data", tmp_path / "d")
    assert res.returncode == 0 and len(res.stdout.splitlines()) == 10002
    assert not (tmp_path / "d").exists()


# --- 8. The Makefile passes paths and queries safely ------------------------------------------


def test_make_quotes_paths_and_passes_q_raw(tmp_path):
    data = tmp_path / "my data $HOME"
    add_run(data, "r0")
    q = """SELECT '$1 "x" $$y' AS v, count(*) AS n FROM runs"""
    res = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), "sql", f"DATA={data}", f"Q={q}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert '$1 "x" $$y' in res.stdout and "┆ 1 " in res.stdout
    res = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), "check", f"DATA={data}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0 and "1 runs verified, 0 problems" in res.stdout


# --- 5. Collectors that share work ------------------------------------------------------------

TINY = """
seeds = [0, 1]
[base]
dataset = "digits"
n_train = 64
n_test = 32
width = 8
steps = {steps}
batch_size = 16
log_every = 5
eval_every = 10
eval_examples = 16
theorem_examples = 1
bfd_batch = 2
sharpness_iters = 1
[grid]
lr = [0.01, 0.02]
"""


def collect_proc(sweep: Path, data: Path, *extra):
    return subprocess.Popen(
        [PYTHON, "-m", "gclab", "collect", "--sweep", str(sweep), "--data", str(data), *extra],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def trained(stdout: str) -> int:
    return int(stdout.split("collected ")[1].split(" runs")[0])


def test_two_concurrent_collects_train_each_run_once(tmp_path):
    sweep, data = tmp_path / "tiny.toml", tmp_path / "data"
    sweep.write_text(TINY.format(steps=40))
    a, b = (collect_proc(sweep, data, "--workers", "1") for _ in range(2))
    outs = [p.communicate(timeout=900) for p in (a, b)]
    assert a.returncode == b.returncode == 0, outs
    assert trained(outs[0][0]) + trained(outs[1][0]) == 4, outs
    res = sql(data, "SELECT count(*) AS n FROM runs WHERE status = 'completed'")
    assert count(res) == 4 and warnings(res) == []
    # A collect after a file of a completed run broke re-runs exactly that run; the bytes are kept.
    before = digests(data)
    victim = next(p for p in sorted(data.rglob("steps.parquet")))
    victim.write_bytes(victim.read_bytes()[:-30])
    res = run_cli("collect", "--sweep", sweep, "--data", data, timeout=900)
    assert res.returncode == 0 and trained(res.stdout) == 1, res.stdout + res.stderr
    assert "moved to" in res.stderr and "Traceback" not in res.stderr
    after = digests(data)
    assert {k: v for k, v in after.items() if k in before and victim.parent.name not in k} == {
        k: v for k, v in before.items() if victim.parent.name not in k
    }
    assert any(k.startswith("quarantine/") for k in after)


def test_killed_parent_leaves_no_workers_and_no_stale_claims(tmp_path):
    sweep, data = tmp_path / "slow.toml", tmp_path / "data"
    sweep.write_text(TINY.format(steps=100000))
    parent = collect_proc(sweep, data, "--workers", "2")
    claims = []
    deadline = time.time() + 300
    while len(claims) < 2:  # both workers hold a run
        assert time.time() < deadline and parent.poll() is None
        claims = [p for p in (data / "runs").glob("sweep=slow/.run_id=*.claim") if p.read_text().strip()]
        time.sleep(0.2)
    workers = [int(p.read_text().split()[1]) for p in claims]
    parent.kill()  # SIGKILL to the parent alone: no chance to clean up
    parent.communicate()
    deadline = time.time() + 60
    while any(_alive(pid) for pid in workers):
        assert time.time() < deadline, "orphaned workers"
        time.sleep(0.2)
    # The dead workers' claims are free again: a new collect trains the runs.
    sweep.write_text(TINY.format(steps=20))
    res = run_cli("collect", "--sweep", sweep, "--data", data, "--workers", "1", timeout=900)
    assert res.returncode == 0 and trained(res.stdout) == 4, res.stdout + res.stderr


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat")
    return not (state.exists() and state.read_text().split(") ")[1].startswith("Z"))

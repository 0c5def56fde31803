"""Faults on the surfaces added after the store's first guarantees (issue 22): repair and links,
report output, limits, the read-only check, missing stores, bad collect input. Each through the
real CLI (or the public API where the CLI cannot reach), checking the exit code, one error line
with no traceback, and the sha256 of every Parquet file where data is at stake."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from gclab.store.db import StoreError
from gclab.store.layout import RunFolder
from gclab.store.readonly import check_read_only
from tests._helpers.cli import PYTHON, ROOT, one_error_line, parquet_sha256, run_cli


def add_run(data: Path, run_id: str, sweep: str = "fig5", steps: dict | None = None) -> Path:
    rf = RunFolder(data, sweep, run_id)
    rf.start()
    rf.write("steps", steps or {"run_id": [run_id] * 3, "step": [0, 1, 2], "gc": [1.0, 2.0, 3.0]})
    rf.finish({"run_id": run_id, "sweep": sweep, "status": "completed", "seed": 0})
    return rf.path


@pytest.fixture
def store(tmp_path) -> Path:
    data = tmp_path / "data"
    for i in range(4):
        add_run(data, f"r{i}")
    return data


def n_runs(data: Path) -> int:
    res = run_cli("sql", "--data", data, "-q", "SELECT count(*) AS n FROM runs")
    assert res.returncode == 0, res.stderr
    return int(res.stdout.split("╞")[1].split("│")[1].strip())


# --- repair and links ---------------------------------------------------------------------


def test_repair_moves_a_sweep_link_and_never_the_runs_it_points_at(store):
    (store / "runs" / "sweep=latest").symlink_to("sweep=fig5")
    before = parquet_sha256(store / "runs" / "sweep=fig5")
    res = run_cli("check", "--data", store)
    assert res.returncode == 1 and "symbolic link" in res.stdout, res.stdout
    res = run_cli("check", "--data", store, "--repair")
    assert res.returncode == 0, res.stdout + res.stderr
    assert parquet_sha256(store / "runs" / "sweep=fig5") == before and len(before) == 8
    moved = store / "quarantine" / "sweep=latest"
    assert moved.is_symlink() and os.readlink(moved) == "sweep=fig5"
    assert [p.name for p in (store / "quarantine").iterdir()] == ["sweep=latest"]  # the link, nothing else
    assert n_runs(store) == 4
    assert run_cli("check", "--data", store).returncode == 0


@pytest.mark.parametrize("where", ["sweep", "run", "file"])
def test_repair_never_touches_a_path_outside_the_store(store, tmp_path, where):
    outside = tmp_path / "outside"
    add_run(outside, "x1", sweep="fig5")
    outside_before = parquet_sha256(outside)
    target = outside / "runs" / "sweep=fig5"
    if where == "sweep":
        (store / "runs" / "sweep=mine").symlink_to(target)
    elif where == "run":
        (store / "runs" / "sweep=fig5" / "run_id=x1").symlink_to(target / "run_id=x1")
    else:  # a file of a stored run replaced by a link to another run's file
        f = store / "runs" / "sweep=fig5" / "run_id=r0" / "steps.parquet"
        f.unlink()
        f.symlink_to(target / "run_id=x1" / "steps.parquet")
    inside_before = {k: v for k, v in parquet_sha256(store).items() if "r0" not in k or where != "file"}
    res = run_cli("check", "--data", store, "--repair")
    assert res.returncode == 0 and "moved" in res.stdout, res.stdout + res.stderr
    assert parquet_sha256(outside) == outside_before
    assert sorted(p.name for p in (target / "run_id=x1").iterdir()) == ["run.parquet", "steps.parquet"]
    after = parquet_sha256(store)
    assert {k: v for k, v in after.items() if not k.startswith("quarantine/")} == {
        k: v for k, v in inside_before.items() if not (where == "file" and "run_id=r0" in k)
    }
    assert n_runs(store) == (3 if where == "file" else 4)


# --- report output ------------------------------------------------------------------------

SPEC = {
    "data": {"values": [{"a": 1, "b": 2}, {"a": 2, "b": 1}]},
    "mark": "point",
    "encoding": {"x": {"field": "a", "type": "quantitative"}, "y": {"field": "b", "type": "quantitative"}},
}


def test_report_figures_never_remove_files_the_report_did_not_write(tmp_path):
    from gclab.analysis.report.export import export_all
    from gclab.analysis.report.page import vl_version

    figs = tmp_path / "site" / "figures"
    figs.mkdir(parents=True)
    (figs / "mine.png").write_bytes(b"\x89PNG my own figure")
    (figs / "mine.svg").write_text("<svg>mine</svg>")
    (figs / "notes.txt").write_text("mine")
    own = {p.name: p.read_bytes() for p in figs.iterdir()}
    export_all({"first": SPEC, "second": SPEC}, figs, vl_version())
    assert {"first.png", "first.svg", "second.png", "second.svg"} <= {p.name for p in figs.iterdir()}
    export_all({"second": SPEC}, figs, vl_version())  # the next render drops `first`: its own stale figure
    names = {p.name for p in figs.iterdir() if not p.name.startswith(".")}
    assert names == {"second.png", "second.svg", *own}
    assert {n: (figs / n).read_bytes() for n in own} == own


def test_report_out_a_file_or_unwritable_folder_fails_before_any_analysis(store, tmp_path):
    before = parquet_sha256(store)
    a_file = tmp_path / "site"
    a_file.write_text("not a folder")
    for out in (a_file, a_file / "sub"):
        res = run_cli("report", "--data", store, "--out", out, timeout=120)
        line = one_error_line(res)
        assert "--out" in line and "running the analyses" not in res.stderr
    assert a_file.read_text() == "not a folder" and parquet_sha256(store) == before


@pytest.mark.skipif(os.geteuid() == 0 and not shutil.which("setpriv"), reason="root writes everywhere")
def test_report_out_a_read_only_folder_fails_before_any_analysis(store):
    # Outside pytest's own base folder, whose mode a concurrent pytest session resets to 0700.
    base = Path(tempfile.mkdtemp(prefix="gclab-ro-"))
    try:
        base.chmod(0o755)
        data, out = base / "data", base / "ro"
        shutil.copytree(store, data)
        out.mkdir()
        out.chmod(0o555)
        for p in data.rglob("*"):
            p.chmod(p.stat().st_mode | 0o005)
        data.chmod(0o755)
        before = parquet_sha256(data)
        # as root, run as nobody, who can read the store but not write `out`
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
        res = subprocess.run(
            [*prefix, PYTHON, "-m", "gclab", "report", "--data", str(data), "--out", str(out)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            timeout=120,
        )
        line = one_error_line(res)
        assert "cannot be written" in line and "running the analyses" not in res.stderr
        assert list(out.iterdir()) == [] and parquet_sha256(data) == before
    finally:
        shutil.rmtree(base)


# --- limits and the read-only check -------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("--timeout", "nan"),
        ("--timeout", "inf"),
        ("--timeout", "-1"),
        ("--max-rows", "0"),
        ("--memory-limit", "0"),
        ("--memory-limit", "lots"),
    ],
)
def test_limits_must_be_finite_positive_numbers(store, args):
    res = run_cli("sql", "--data", store, "-q", "SELECT count(*) FROM runs", *args, timeout=120)
    assert args[0] in one_error_line(res)


def test_memory_limit_bounds_what_the_process_fetches(store):
    q = "SELECT repeat('x', 1000000) AS s FROM range(400)"  # 400 MB of strings, outside DuckDB's tracked memory
    res = run_cli("sql", "--data", store, "-q", q, "--max-rows", "1000", "--memory-limit", "50MB", timeout=300)
    assert "memory limit" in one_error_line(res)
    res = run_cli("sql", "--data", store, "-q", "SELECT count(*) AS n FROM runs", "--memory-limit", "50MB")
    assert res.returncode == 0 and "4" in res.stdout


@pytest.mark.parametrize(
    "q",
    [
        "WITH d AS (DELETE FROM runs RETURNING *) SELECT * FROM d",
        "SELECT * FROM (WITH u AS (UPDATE runs SET seed = 1 RETURNING *) SELECT * FROM u)",
        "EXPLAIN WITH i AS (INSERT INTO runs DEFAULT VALUES RETURNING *) SELECT 1",
    ],
)
def test_writes_hidden_in_a_select_are_refused_by_the_check_itself(store, q):
    with pytest.raises(StoreError, match="not allowed"):
        check_read_only(q)
    before = parquet_sha256(store)
    assert "not allowed" in one_error_line(run_cli("sql", "--data", store, "-q", q))
    assert parquet_sha256(store) == before


def test_reads_with_ctes_unions_and_subqueries_still_pass(store):
    for q in (
        "WITH a AS (SELECT run_id FROM runs) SELECT count(*) FROM a",
        "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 3) SELECT * FROM t",
        "SELECT run_id FROM runs UNION SELECT run_id FROM steps",
        "SELECT (SELECT max(step) FROM steps) AS m",
    ):
        check_read_only(q)
    assert n_runs(store) == 4


# --- a store path that does not exist -----------------------------------------------------


@pytest.mark.parametrize("command", [("claims",), ("sql", "-q", "SELECT 1"), ("report", "--out", "OUT"), ("check",)])
def test_read_commands_on_a_missing_store_say_so_and_create_nothing(tmp_path, command):
    typo, out = tmp_path / "typo", tmp_path / "out"
    res = run_cli(command[0], "--data", typo, *(out if a == "OUT" else a for a in command[1:]))
    line = one_error_line(res)
    assert str(typo) in line and "--data" in line
    assert not typo.exists() and not out.exists()


# --- collect input ------------------------------------------------------------------------

TINY = """
[base]
dataset = "digits"
n_train = 32
n_test = 32
width = 4
steps = 2
batch_size = 32
eval_every = 2
[grid]
lr = [0.01]
"""


@pytest.mark.parametrize(
    "extra",
    [
        ("--workers", "-1"),
        ("--workers", "0"),
        ("--set", "width=" + "[" * 3000 + "]" * 3000),
        ("--set", "tags=" + "{a=" * 3000 + "1" + "}" * 3000),
    ],
)
def test_bad_collect_input_is_one_line_and_writes_nothing(store, tmp_path, extra):
    sweep = tmp_path / "tiny.toml"
    sweep.write_text(TINY)
    before = parquet_sha256(store)
    res = run_cli("collect", "--sweep", sweep, "--data", store, *extra, timeout=300)
    line = one_error_line(res)
    assert ("--workers" in line) if extra[0] == "--workers" else ("nested too deeply" in line)
    assert parquet_sha256(store) == before


def test_a_deeply_nested_sweep_file_is_one_line(store, tmp_path):
    sweep = tmp_path / "deep.toml"
    sweep.write_text(TINY.replace("lr = [0.01]", "lr = " + "[" * 3000 + "0.01" + "]" * 3000))
    before = parquet_sha256(store)
    line = one_error_line(run_cli("collect", "--sweep", sweep, "--data", store, timeout=300))
    assert "nested too deeply" in line and parquet_sha256(store) == before


def test_the_collect_api_refuses_bad_workers(store, tmp_path):
    from gclab.collect.runner import collect_sweep
    from gclab.collect.sweep import ConfigError

    sweep = tmp_path / "tiny.toml"
    sweep.write_text(TINY)
    before = parquet_sha256(store)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match="--workers"):
            collect_sweep(str(sweep), store, workers=bad)
    assert parquet_sha256(store) == before


# --- user runs and the Eq. 6 identity check -------------------------------------------------


def _terms(run_id: str, g: list[float]) -> dict:
    n = len(g)
    return {
        "run_id": [run_id] * n,
        "step": list(range(n)),
        "grad_norm_sq": g,
        "residual_term": [1.0] * n,
        "label_alignment": [0.5] * n,
        "batch_alignment": [0.25] * n,
    }


def _checks(data: Path) -> dict[str, dict]:
    """The Eq. 6 identity and Theorem 5.1 check rows of `gclab claims --json`."""
    res = run_cli("claims", "--data", data, "--json", timeout=600)
    assert res.returncode == 0, res.stderr
    from gclab.analysis.igr import IDENTITY_CLAIM
    from gclab.analysis.theorem import VIOLATION_CLAIM

    rows = json.loads(res.stdout)
    out = {k: [r for r in rows if r["claim"] == c] for k, c in (("eq6", IDENTITY_CLAIM), ("thm", VIOLATION_CLAIM))}
    assert all(len(v) == 1 for v in out.values()), out
    return {k: v[0] for k, v in out.items()}


def _theorem(run_id: str, gc_x: float, bound_tight: float) -> dict:
    return {
        "run_id": [run_id],
        "step": [0],
        "split": ["train"],
        "example": [0],
        "gc_x": [gc_x],
        "bound": [bound_tight * 2],
        "bound_tight": [bound_tight],
        "holds_tight": [gc_x <= bound_tight],
    }


def _add(data: Path, run_id: str, sweep: str, steps: dict, theorem: dict) -> None:
    rf = RunFolder(data, sweep, run_id)
    rf.start()
    rf.write("steps", steps)
    rf.write("theorem", theorem)
    rf.finish({"run_id": run_id, "sweep": sweep, "status": "completed", "seed": 0})


def test_a_users_run_never_changes_the_check_rows(tmp_path):
    data = tmp_path / "data"
    _add(data, "shipped", "igr", _terms("shipped", [1.75, 1.75, 1.75]), _theorem("shipped", 1.0, 1.5))
    before = _checks(data)
    assert {k: r["verdict"] for k, r in before.items()} == {"eq6": "supported", "thm": "supported"}
    # A user's completed run whose logged terms do not add up and whose theorem rows break the bound
    # (e.g. its own loss, or a model the theorem is not about).
    _add(data, "user", "mine", _terms("user", [9.0, float("nan"), 1.75]), _theorem("user", 5.0, 1.0))
    after = _checks(data)
    for k in ("eq6", "thm"):
        assert after[k]["verdict"] == "supported" and after[k]["n_runs"] == 1, after[k]
        assert after[k]["value"] == before[k]["value"]

"""The `gclab` command run as a user runs it (a real subprocess), and a store's Parquet bytes for no-write checks."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def run_cli(*args, cwd=None, timeout=600, env=None):
    """Run `gclab <args>` (the installed package) as a real subprocess, as a user would.

    Whatever the input, the command must answer with its own message, never a Python traceback
    (bad input is a one-line error): that is asserted here for every call."""
    res = subprocess.run(
        [PYTHON, "-m", "gclab", *map(str, args)],
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    assert "Traceback (most recent call last)" not in res.stderr, f"gclab {' '.join(map(str, args))}:\n{res.stderr}"
    return res


def tree_bytes(folder: Path) -> dict[str, bytes]:
    """Every Parquet file under folder, by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.parquet"))}


def parquet_sha256(folder: Path) -> dict[str, str]:
    """sha256 of every Parquet file under folder (hidden folders included), by relative path."""
    import hashlib

    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(folder).rglob("*.parquet"))
        if p.is_file() and not p.is_symlink()
    }


def one_error_line(res, code: int = 2) -> str:
    """The single `error:` line of a refused command (warnings aside), after checking the exit code."""
    assert res.returncode == code, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and not ln.startswith(("warning:", "note:"))]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    return lines[0]

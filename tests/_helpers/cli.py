"""The package run as a user runs it (a real subprocess), and a store's Parquet bytes for no-write checks."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def run_cli(*args, cwd=None, timeout=600, env=None):
    """Run `python -m <args>` as a real subprocess, as a user would."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [PYTHON, "-m", *map(str, args)], cwd=cwd or ROOT, capture_output=True, text=True, timeout=timeout, env=full_env
    )


def tree_bytes(folder: Path) -> dict[str, bytes]:
    """Every Parquet file under folder, by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.parquet"))}

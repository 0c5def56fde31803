"""Workers end with their collector, on either backend, however the collector dies (even SIGKILL).

- Local pool: each worker watches its parent pid and exits when it is reparented.
- Ray task: it watches the collector's (host, pid, start time) and exits when that process is gone
  (same host only; on a remote cluster Ray ends a dead driver's tasks itself).
- Ray's own processes (GCS, raylet, agents, workers) that `ray.init` started for this collector: a
  reaper process snapshots the collector's descendants that are Ray's (by command line) every
  second and, once the collector is gone, kills the ones it saw that are still running (pid and
  start time must both match). Left alone, Ray's agents outlive their raylet by about a minute.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

POLL_S = 0.5
_watching: set[tuple] = set()


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22), or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def identity() -> tuple[str, int, int | None]:
    """(host, pid, start time) of this process, for `exit_with` in a task."""
    return socket.gethostname(), os.getpid(), start_time(os.getpid())


def alive(pid: int, started: int | None) -> bool:
    now = start_time(pid)
    return now is not None and (started is None or now == started)


def exit_with_parent(parent: int) -> None:
    """Pool initializer: a worker whose parent died (reparented) exits at once, mid-run or idle."""

    def watch():
        while os.getppid() == parent:
            time.sleep(POLL_S)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def exit_with(owner: tuple[str, int, int | None]) -> None:
    """In a task: exit this process when `owner` (from `identity()`) is gone; once per owner per process."""
    host, pid, started = owner
    if host != socket.gethostname() or owner in _watching or not Path("/proc").is_dir():
        return
    _watching.add(owner)

    def watch():
        while alive(pid, started):
            time.sleep(POLL_S)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-collector").start()


RAY_MARKERS = (
    b"ray::",
    b"/site-packages/ray/",
    b"/dist-packages/ray/",
)  # Ray's workers and agents, and its binaries and scripts


def _is_ray(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return any(m in cmdline for m in RAY_MARKERS)


def _ray_descendants(root: int) -> dict[int, int | None]:
    """pid → start time of the Ray processes below `root` (others, e.g. a user's own, are never touched)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, seen, todo = {}, set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child != os.getpid() and child not in seen:
                seen.add(child)
                todo.append(child)
                if _is_ray(child):
                    out[child] = start_time(child)
    return out


def reap(owner_pid: int, owner_started: int | None) -> None:
    """Reaper main loop (its own process): see the module docstring."""
    seen: dict[int, int | None] = {}
    while alive(owner_pid, owner_started):
        seen.update(_ray_descendants(owner_pid))
        seen = {p: t for p, t in seen.items() if alive(p, t)}
        time.sleep(1.0)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        left = {p: t for p, t in seen.items() if alive(p, t)}
        for pid in left:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + 3
        while left and time.monotonic() < deadline:
            left = {p: t for p, t in left.items() if alive(p, t)}
            time.sleep(0.1)


def start_reaper() -> None:
    """Start the reaper for this process's descendants (call after `ray.init` started a local cluster)."""
    if not Path("/proc").is_dir():
        return
    _, pid, started = identity()
    code = f"from gclab.collect.lifetime import reap; reap({pid}, {started!r})"
    subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C to the collector's terminal must not end the reaper first
    )

"""Per-run claims: one run has one writer, whoever writes it (runner, Recorder, Lightning callback).

A claim is an exclusive `flock` on `sweep=<s>/.run_id=<id>.claim` (dot-prefixed: no view or
check ever reads it). The kernel drops the lock when its holder dies, however it dies, so a
killed writer leaves no stale claim to clean up: the next writer simply gets it. The file holds
the holder's host and pid, for the message of whoever finds it taken. Within one process a claim
is re-entrant (the runner claims a run, then the Recorder that trains it claims it again).
"""

from __future__ import annotations

import fcntl
import os
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from gclab.store.layout import run_dir

if TYPE_CHECKING:
    from gclab.store.lease import Lease
    from gclab.store.location import Location

# This process's claims: lock file → [fd, depth]. flock is per open file, so a second open in the
# same process would find its own lock taken; nested claims share the first one instead.
_HELD: dict[str, list[int]] = {}
_HELD_LOCK = threading.Lock()


class ClaimTaken(RuntimeError):
    """Another process is writing this run (one line, says what to do)."""


class Claim:
    """Context manager; `held` says whether this process got the run."""

    def __init__(self, data_dir: str | Path, sweep: str, run_id: str):
        folder = run_dir(data_dir, sweep, run_id)
        self.path = folder.parent / f".{folder.name}.claim"
        self.key = os.path.abspath(self.path)
        self.held = False

    def acquire(self) -> bool:
        if self.held:
            return True
        with _HELD_LOCK:
            if self.key in _HELD:
                _HELD[self.key][1] += 1
                self.held = True
                return True
            fd = self._lock()
            if fd is None:
                return False
            _HELD[self.key] = [fd, 1]
            self.held = True
            return True

    def _lock(self) -> int | None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            try:  # the holder before us may have unlinked the file after we opened it
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
        return fd

    def require(self, what: str) -> None:
        """Acquire or raise ClaimTaken naming the holder."""
        if not self.acquire():
            raise ClaimTaken(
                f"{what} is being written by {self.holder()} (host pid); wait for it to finish, "
                "or record under another tag to keep both runs"
            )

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "another process"
        except OSError:
            return "another process"

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        with _HELD_LOCK:
            entry = _HELD[self.key]
            entry[1] -= 1
            if entry[1] == 0:
                del _HELD[self.key]
                self.path.unlink(missing_ok=True)  # unlink before unlock: see the inode check above
                os.close(entry[0])

    def __enter__(self) -> Claim:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def claim_for(data: str | Path | Location, sweep: str, run_id: str) -> Claim | Lease:
    """The run's claim where its store lives: a lock file on local disk, a lease object in a bucket."""
    from gclab.store.location import Location, parse

    location = data if isinstance(data, Location) else parse(data)
    if location.local is not None:
        return Claim(location.local, sweep, run_id)
    from gclab.store.lease import Lease

    return Lease(location, sweep, run_id)

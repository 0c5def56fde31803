"""Per-run claims, so that collectors sharing a store share the work.

A claim is an exclusive `flock` on `sweep=<s>/.run_id=<id>.claim` (dot-prefixed: no view or
check ever reads it). The kernel drops the lock when its holder dies, however it dies, so a
killed collector leaves no stale claim to clean up: the next collector simply gets it. The
file holds the holder's host and pid, for the message of whoever finds it taken.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from gclab.store.layout import run_dir


class Claim:
    """Context manager; `held` says whether this process got the run."""

    def __init__(self, data_dir: str | Path, sweep: str, run_id: str):
        folder = run_dir(data_dir, sweep, run_id)
        self.path = folder.parent / f".{folder.name}.claim"
        self.fd: int | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            try:  # the holder before us may have unlinked the file after we opened it
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
        self.fd = fd
        return True

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "another collector"
        except OSError:
            return "another collector"

    def release(self) -> None:
        if self.fd is not None:
            self.path.unlink(missing_ok=True)  # unlink before unlock: see the inode check above
            os.close(self.fd)
            self.fd = None

    @property
    def held(self) -> bool:
        return self.fd is not None

    def __enter__(self) -> Claim:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

"""Per-thread buffers reused across metric passes for the large per-step tensors.

Why: glibc hands freed MB-sized blocks back to the OS, and re-touching fresh pages costs more
than the arithmetic on them on this kind of VM (measured: chain backward 3.2 ms -> 2.1 ms
single-threaded; the CNN suite of docs/METRICS.md 4300 -> 5 page faults per step). A tensor
taken from here lives until the next pass in the same thread.
Evidence: make bench peers/cnn_stride2 (suite column; docs/METRICS.md "Measuring: `make bench`").
"""

from __future__ import annotations

import math
import threading

import torch
from torch import Tensor


class Workspace:
    def __init__(self):
        self.bufs: dict = {}

    MAX_ELEMENTS = 1 << 24  # larger buffers (e.g. many Hutchinson rows) are not kept

    def get(self, key, shape, like: Tensor) -> Tensor:
        if math.prod(shape) > self.MAX_ELEMENTS:
            self.bufs.pop(key, None)
            return torch.empty(shape, dtype=like.dtype, device=like.device)
        t = self.bufs.get(key)
        if t is None or t.shape != shape or t.dtype != like.dtype or t.device != like.device:
            with torch.inference_mode(False):  # a normal tensor: writable in and out of inference mode
                t = self.bufs[key] = torch.empty(shape, dtype=like.dtype, device=like.device)
        return t


class NoWorkspace:
    def get(self, key, shape, like):
        return torch.empty(shape, dtype=like.dtype, device=like.device)


_LOCAL = threading.local()


def workspace() -> Workspace:
    if not hasattr(_LOCAL, "ws"):
        _LOCAL.ws = Workspace()
    return _LOCAL.ws

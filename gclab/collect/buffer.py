"""Column buffers: rows accumulate as numpy chunks and become one Arrow-ready dict at the end."""

from __future__ import annotations

from collections import defaultdict

import numpy as np


class TableBuffer:
    def __init__(self):
        self._chunks: dict[str, list[np.ndarray]] = defaultdict(list)

    def append(self, **values) -> None:
        """Scalars are broadcast to the length of the array values (1 if there are none)."""
        arrays = {k: np.asarray(v) for k, v in values.items()}
        n = max((a.shape[0] for a in arrays.values() if a.ndim), default=1)
        for key, a in arrays.items():
            self._chunks[key].append(np.repeat(a[None], n) if a.ndim == 0 else a)

    def columns(self) -> dict[str, np.ndarray]:
        return {k: np.concatenate(v) for k, v in self._chunks.items()}

    def __len__(self) -> int:
        first = next(iter(self._chunks.values()), [])
        return sum(len(c) for c in first)

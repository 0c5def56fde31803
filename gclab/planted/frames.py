"""Planted runs as per-store-table Arrow frames, a batch at a time, for `store.table.commit_tables`.

The values are `planted_runs`' own (docs/EXPERIMENTS.md "Verdicts"); only the path to the store
differs from `write_planted_store`: a batch's columns are concatenated and cast once per table
(`store.layout.to_arrow`) instead of written as one run folder per run, so a store of 10⁵ runs
builds in minutes (docs/METRICS.md, "The store bench").
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa

from gclab.store.layout import to_arrow
from gclab.store.schema import MARKER_TABLE

from .store import planted_runs


def frames_of(runs: Iterable[tuple[object, dict[str, dict]]]) -> dict[str, pa.Table]:
    """The runs' rows per store table in its own columns, plus `sweep` outside `runs` (as
    `store.table.batch_tables` reads them from run folders)."""
    parts: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for _, tables in runs:
        sweep = tables[MARKER_TABLE]["sweep"][0]
        for name, cols in tables.items():
            for col, values in cols.items():
                parts[name][col].append(values)
            if name != MARKER_TABLE:
                parts[name]["sweep"].append(np.full(len(cols["run_id"]), sweep, dtype=object))
    out = {}
    for name, cols in parts.items():
        frame = to_arrow(name, {c: np.concatenate(v) for c, v in cols.items() if c != "sweep" or name == MARKER_TABLE})
        if name != MARKER_TABLE:
            frame = frame.append_column("sweep", pa.array(np.concatenate(cols["sweep"]), pa.string()))
        out[name] = frame
    return out


def planted_batches(*, batch: int, **kw) -> Iterator[dict[str, pa.Table]]:
    """`planted_runs(**kw)` cut into batches of `batch` runs, each as `frames_of` frames."""
    held: list = []
    for run in planted_runs(**kw):
        held.append(run)
        if len(held) == batch:
            yield frames_of(held)
            held = []
    if held:
        yield frames_of(held)

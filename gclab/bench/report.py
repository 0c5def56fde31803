"""Report figures: render time and page size on a planted store of 1,000 runs × 10,000 steps,
and the time of the query "GC at best test accuracy per run" on a fresh connection.

Targets: render ≤ 60 s on 2 cores; the query ≤ 3 s; index.html ≤ 20 MB.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

N_RUNS, N_STEPS = 1_000, 10_000
RENDER_TARGET_S, QUERY_TARGET_S, HTML_TARGET_BYTES = 60.0, 3.0, 20 * 1024 * 1024


def _dir_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def gc_at_best_query_seconds(data_dir: Path) -> tuple[float, float, int]:
    """(connect s, query s, rows): "GC at best test acc per run" over the Parquet views, as a user's SQL runs."""
    from gclab.analysis.run_summary import GC_AT_BEST_SQL
    from gclab.store.db import connect, query

    t0 = time.perf_counter()
    with connect(data_dir, warn=False) as con:
        t1 = time.perf_counter()
        rows = query(con, GC_AT_BEST_SQL).height
        t2 = time.perf_counter()
    return t1 - t0, t2 - t1, rows


def run(tmp_dir=None) -> dict:
    from gclab.analysis.report import render
    from gclab.planted.store import SWEEPS, write_planted_store

    own = tmp_dir is None
    root = Path(tempfile.mkdtemp(prefix="gclab-bench-report-") if own else tmp_dir)
    try:
        data, out = root / "data", root / "reports"
        t0 = time.perf_counter()
        write_planted_store(
            data, sweeps=SWEEPS, n_runs=N_RUNS, cadence={"steps": N_STEPS, "log_every": 10, "eval_every": 50}
        )
        write_s = time.perf_counter() - t0

        connect_s, query_s, n_rows = gc_at_best_query_seconds(data)

        t0 = time.perf_counter()
        index = render(data, out, progress=False)
        render_s = time.perf_counter() - t0
        figures = sorted(p.name for p in (out / "figures").glob("*.png"))
        html_bytes = index.stat().st_size
        return {
            "store": {
                "runs": N_RUNS,
                "steps_per_run": N_STEPS,
                "bytes": _dir_bytes(data / "runs"),
                "write_s": round(write_s, 1),
            },
            "connect_s": round(connect_s, 2),
            "gc_at_best_test_acc_query_s": round(query_s, 2),
            "gc_query_rows": n_rows,
            "gc_query_target_s": QUERY_TARGET_S,
            "gc_query_ok": query_s <= QUERY_TARGET_S,
            "render_s": round(render_s, 1),
            "render_target_s": RENDER_TARGET_S,
            "render_ok": render_s <= RENDER_TARGET_S,
            "render_phases_s": dict(render.last_timings),
            "index_html_bytes": html_bytes,
            "index_html_target_bytes": HTML_TARGET_BYTES,
            "index_html_ok": html_bytes <= HTML_TARGET_BYTES,
            "figures": figures,
            "n_figures": len(figures),
            "figures_bytes": _dir_bytes(out / "figures") if (out / "figures").exists() else 0,
        }
    finally:
        if own:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))

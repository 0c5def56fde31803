"""DuckDB aggregations the charts are drawn from: per-run summaries and step-binned curves.

Everything is reduced in SQL before it reaches Altair, so a chart holds at most a few
thousand rows whatever the store's size (per-run curves are binned to ≤ 200 points, fewer
when many runs share a chart).
"""

from __future__ import annotations

import polars as pl

from gclab.analysis.report.common import query
from gclab.analysis.run_summary import with_runs

MAX_POINTS_PER_CURVE = 200
ROW_BUDGET = 12_000  # rows per chart's main dataset (Altair's max_rows is set just above it)


# Tables copied into memory; the others (layers) stay views over Parquet, read only if queried.
SNAPSHOT_TABLES = ("runs", "steps", "evals", "theorem", "probes")


def snapshot(data_dir):
    """An in-memory DuckDB with the store's views (`store.db`'s own statements, so incomplete
    runs and unreadable files stay out), the main ones materialised as tables of the same names:
    each Parquet glob is scanned once, then every section's and analysis's query runs on memory.

    `runs` is materialised first, so the other views' filter on complete runs reads it from memory
    instead of re-opening every run.parquet. Refreshes `runs.duckdb` (and warns about bad files)
    as `connect` does.
    """
    import duckdb

    from gclab.store.db import refresh

    _, views = refresh(data_dir)
    mem = duckdb.connect()
    for sql in views.values():
        mem.sql(sql)
    for name in SNAPSHOT_TABLES:
        mem.sql(f"CREATE TABLE snap_{name} AS SELECT * FROM {name}")
        mem.sql(f"DROP VIEW {name}")
        mem.sql(f"ALTER TABLE snap_{name} RENAME TO {name}")
    return mem


def points_per_run(n_runs: int, budget: int = ROW_BUDGET, cap: int = MAX_POINTS_PER_CURVE) -> int:
    return int(max(8, min(cap, budget // max(n_runs, 1))))


def summary_sql(where: str = "TRUE") -> str:
    """One row per completed run matching `where` (over runs, alias r): its config and outcome,
    with the docs/EXPERIMENTS.md conventions from the one place that defines them,
    `analysis.run_summary` (gc = GC at best test acc, gc_last = GC at the last eval, ...)."""
    return with_runs(f"""
    SELECT rs.*, rs.last_step AS final_step
    FROM rs WHERE rs.run_id IN (SELECT r.run_id FROM runs r WHERE {where})
    ORDER BY rs.run_id""")


# "GC of a run" alone (the query `make bench` times): train GC at the eval step of the best
# test accuracy (ties: earliest; NaN acc, i.e. regression: lowest test loss), completed runs.
GC_AT_BEST_SQL = """
WITH e AS MATERIALIZED (
    SELECT e.run_id, e.step, e.split, e.acc, e.loss, e.gc FROM evals e WHERE e.split IN ('train', 'test')),
best AS (
    SELECT run_id, first(step ORDER BY CASE WHEN isnan(acc) THEN NULL ELSE acc END DESC NULLS LAST, loss, step)
           AS best_step
    FROM e WHERE split = 'test' GROUP BY run_id)
SELECT b.run_id, b.best_step, t.gc
FROM best b JOIN e t ON t.run_id = b.run_id AND t.step = b.best_step AND t.split = 'train'
JOIN runs r ON r.run_id = b.run_id
WHERE r.status = 'completed'
ORDER BY b.run_id"""


def run_summary(con, where: str = "TRUE") -> pl.DataFrame:
    return query(con, summary_sql(where))


def binned_curves(
    con,
    table: str,
    values: dict[str, str],
    *,
    where: str = "TRUE",
    runs_where: str = "TRUE",
    by: tuple[str, ...] = ("run_id",),
    points: int | None = None,
) -> pl.DataFrame:
    """Curves over training, binned per run to `points` step bins and averaged within `by`.

    `values` maps output name → SQL aggregate input over the table's row (alias x), e.g.
    {"test_loss": "x.loss"}. `where` filters rows (alias x), `runs_where` filters runs (alias r).
    `by` are columns of runs (or "run_id"); with by=("run_id",) each run keeps its own curve,
    with config columns the runs sharing them (seeds) are averaged per bin (mean and sd, n).
    Returns by..., step (mean step of the bin), then per value: <v> (mean), <v>_sd, <v>_n.
    """
    n_runs = query(con, f"SELECT count(*) AS n FROM runs r WHERE r.status = 'completed' AND ({runs_where})")["n"][0]
    n_curves = n_runs if by == ("run_id",) else max(1, _n_groups(con, by, runs_where))
    points = points or points_per_run(n_curves)
    sel = ", ".join(f"CAST({expr} AS DOUBLE) AS {name}" for name, expr in values.items())
    aggs = ", ".join(f"avg(p.{v}) AS {v}, stddev_samp(p.{v}) AS {v}_sd, count(p.{v}) AS {v}_n" for v in values)
    by_sql = ", ".join(f"r.{c}" for c in by)
    sql = f"""
    WITH x AS (
        SELECT x.run_id, x.step, {sel},
               max(x.step) OVER (PARTITION BY x.run_id) AS max_step
        FROM {table} x JOIN runs r ON r.run_id = x.run_id
        WHERE r.status = 'completed' AND ({runs_where}) AND ({where})),
    per_run AS (
        SELECT run_id, floor(step * {points} / (max_step + 1)) AS bin, avg(step) AS step,
               {", ".join(f"avg(CASE WHEN isnan({v}) THEN NULL ELSE {v} END) AS {v}" for v in values)}
        FROM x GROUP BY run_id, bin)
    SELECT {by_sql}, p.bin, avg(p.step) AS step, {aggs}
    FROM per_run p JOIN runs r ON r.run_id = p.run_id
    GROUP BY {by_sql}, p.bin
    ORDER BY {by_sql}, p.bin"""
    df = query(con, sql).drop("bin")
    if by == ("run_id",):
        df = df.drop([c for v in values for c in (f"{v}_sd", f"{v}_n")])
    return df


def _n_groups(con, by: tuple[str, ...], runs_where: str) -> int:
    cols = ", ".join(f"r.{c}" for c in by)
    return int(
        query(
            con,
            f"SELECT count(*) AS n FROM (SELECT DISTINCT {cols} FROM runs r "
            f"WHERE r.status = 'completed' AND ({runs_where}))",
        )["n"][0]
    )


def group_mean_ci(con, summary_where: str, by: tuple[str, ...], values: tuple[str, ...]) -> pl.DataFrame:
    """Mean, sd and n over seeds of per-run summary values, grouped by config columns, with 95% t CIs."""
    from gclab.analysis.report.common import add_ci

    aggs = ", ".join(f"avg({v}) AS {v}, stddev_samp({v}) AS {v}_sd, count({v}) AS {v}_n" for v in values)
    df = query(
        con,
        f"SELECT {', '.join(by)}, {aggs} FROM ({summary_sql(summary_where)}) "
        f"GROUP BY {', '.join(by)} ORDER BY {', '.join(by)}",
    )
    for v in values:
        df = add_ci(df, v, v, f"{v}_sd", f"{v}_n")
    return df


def sweep_where(*sweeps: str) -> str:
    return "r.sweep IN (" + ", ".join(f"'{s}'" for s in sweeps) + ")"

"""Training curves binned per run in DuckDB, so a chart of thousands of runs stays small.

Pure data shaping for the tables the report draws: each run's logged rows are averaged into at
most `MAX_POINTS_PER_CURVE` equal-width step bins (fewer when many runs share a chart, so a
chart's main dataset stays within `ROW_BUDGET` rows); optionally averaged again over the runs
that share config columns (seeds).
"""

from __future__ import annotations

import polars as pl

from gclab.store.db import query

MAX_POINTS_PER_CURVE = 200
ROW_BUDGET = 12_000  # rows per chart's main dataset (the report's Altair max_rows is set just above it)


def points_per_run(n_runs: int, budget: int = ROW_BUDGET, cap: int = MAX_POINTS_PER_CURVE) -> int:
    return int(max(8, min(cap, budget // max(n_runs, 1))))


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
    groups = f"SELECT DISTINCT {cols} FROM runs r WHERE r.status = 'completed' AND ({runs_where})"
    return int(query(con, f"SELECT count(*) AS n FROM ({groups})")["n"][0])

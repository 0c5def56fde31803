"""The tables behind the trend figures (Figs. 2–4): `analysis.trends`'s deferred tables (computed when the
report draws them, `analysis.result.Analysis.table`).

Per run and per setting (mean over seeds with 95% t-intervals, `analysis.seed_stats.mean_ci`),
over every completed run of the sweep: the figures show all runs, the trend claims only those
at zero training error (`analysis.run_summary.FITTED`).

- fig2 (init only): `fig2_diagonal`, outputs along the diagonal of [−1, 1]^d at the first probe
  step, mean and max over output logits, for the first `FIG2_SEEDS` seeds, every k-th point so
  the table stays within `DIAG_BUDGET` rows; `fig2_gc_runs` GC at the first eval (positive only,
  for a log axis) and `fig2_gc_by_depth` its mean per depth, init and activation; `fig2_families`
  the depth slopes of the trends table per init/activation family.
- fig3: `fig3_runs` one row per (regularizer, run) of the runs where only that regularizer (or
  none) is on (gc_reg from the `gcreg` sweep), `fig3_by_strength` the mean per strength.
- fig4: per axis (lr, batch_size) the runs of its part of the grid (`fig4_<axis>_runs`: a run is
  in the lr part when its batch size is its sweep's most common one, and vice versa), their
  mean per setting (`fig4_<axis>_by_setting`) and their curves over training, binned and averaged
  over seeds (`fig4_<axis>_curves`); `fig4_not_completed` counts runs that diverged or failed.
"""

from __future__ import annotations

import polars as pl

from gclab.analysis.curves import binned_curves
from gclab.analysis.run_summary import run_summary
from gclab.analysis.seed_stats import mean_ci
from gclab.store.db import query
from gclab.store.sweeps import FIG4_SWEEPS, sql_in

FIG2_RUNS = "r.sweep = 'fig2' AND r.status = 'completed'"
FIG2_SEEDS, DIAG_BUDGET = 3, 9_000
# the fig3 sweep's regularizers: explicit penalties, static label corruption, per-step label noise
FIG3_REGS = ["l2", "spectral_reg", "flatness_reg", "label_noise", "step_label_noise"]
REGULARIZERS = (*FIG3_REGS, "gc_reg")  # the figure's columns; gc_reg comes from the gcreg sweep
FIG4_RUNS = f"{sql_in(FIG4_SWEEPS)} AND r.status = 'completed'"
_FIXED = "(SELECT mode(q.{col}) FROM runs q WHERE q.sweep = r.sweep AND q.status = 'completed')"
FIG4_PART = {
    "lr": f"r.batch_size = {_FIXED.format(col='batch_size')}",
    "batch_size": f"r.lr = {_FIXED.format(col='lr')}",
}

_FIG2_SEEDS_SQL = f"""SELECT DISTINCT r.seed FROM runs r SEMI JOIN probes p ON p.run_id = r.run_id
WHERE {FIG2_RUNS} ORDER BY r.seed LIMIT {FIG2_SEEDS}"""
_FIG2_DIAG_SIZE_SQL = f"""SELECT count(*) AS n FROM (SELECT DISTINCT p.run_id, p.t FROM probes p
JOIN runs r ON r.run_id = p.run_id WHERE {FIG2_RUNS} AND r.seed IN ({{seeds}}))"""
_FIG2_DIAG_SQL = f"""
WITH c AS (
    SELECT r.seed, r.depth, r.init, r.activation, p.t, avg(p.output) AS mean_out, max(p.output) AS max_out
    FROM probes p JOIN runs r ON r.run_id = p.run_id
    WHERE {FIG2_RUNS} AND r.seed IN ({{seeds}}) AND p.step = (SELECT min(step) FROM probes q WHERE q.run_id = p.run_id)
    GROUP BY ALL),
n AS (SELECT *, row_number() OVER w - 1 AS i, count(*) OVER w2 AS m FROM c
      WINDOW w AS (PARTITION BY seed, depth, init, activation ORDER BY t),
             w2 AS (PARTITION BY seed, depth, init, activation))
SELECT seed, depth, init, activation, t, mean_out, max_out FROM n
WHERE i % {{stride}} = 0 OR i = m - 1
ORDER BY init, activation, seed, depth, t"""
_FIG2_GC_SQL = f"""
SELECT r.run_id, r.depth, r.init, r.activation, r.seed, e.gc
FROM evals e JOIN runs r ON r.run_id = e.run_id
WHERE {FIG2_RUNS} AND e.split = 'train' AND e.gc > 0
  AND e.step = (SELECT min(step) FROM evals f WHERE f.run_id = e.run_id)
ORDER BY r.init, r.activation, r.depth"""


def _positive_lo(agg: pl.DataFrame) -> pl.DataFrame:
    """A lower bound ≤ 0 cannot be drawn on a log axis: the mean stands in for it."""
    return agg.with_columns(
        pl.when(pl.col("gc_lo") > 0).then(pl.col("gc_lo")).otherwise(pl.col("gc_mean")).alias("gc_lo")
    )


def fig2_tables(con) -> dict[str, pl.DataFrame]:
    seeds = ", ".join(map(str, query(con, _FIG2_SEEDS_SQL)["seed"].to_list())) or "NULL"
    size = int(query(con, _FIG2_DIAG_SIZE_SQL.format(seeds=seeds))["n"][0])
    stride = max(1, -(-size // DIAG_BUDGET))
    gc = query(con, _FIG2_GC_SQL)
    return {
        "fig2_diagonal": query(con, _FIG2_DIAG_SQL.format(seeds=seeds, stride=stride)),
        "fig2_gc_runs": gc,
        "fig2_gc_by_depth": _positive_lo(mean_ci(gc, ["init", "activation", "depth"], ["gc"])),
    }


def fig2_families(trends: pl.DataFrame) -> pl.DataFrame:
    """The fig2 rows of the trends table with a slope, the heuristic "claim [family]" split in two columns."""
    parts = pl.col("heuristic").str.extract_groups(r"^(?<claim>.*) \[(?<family>.*)\]$")
    return (
        trends.filter((pl.col("experiment") == "fig2") & pl.col("slope").is_not_null())
        .with_columns(parts)
        .unnest("heuristic")
        .select("claim", "family", "slope", "slope_lo", "slope_hi", "verdict")
    )


def fig3_tables(con) -> dict[str, pl.DataFrame]:
    summ = run_summary(con, "r.sweep IN ('fig3', 'gcreg')")
    parts = []
    for reg in REGULARIZERS:
        only = summ.filter(
            pl.col("sweep") == ("gcreg" if reg == "gc_reg" else "fig3"),
            *[pl.col(o).fill_null(0) == 0 for o in REGULARIZERS if o != reg],
        )
        parts.append(
            only.select(
                pl.lit(reg).alias("regularizer"),
                pl.col(reg).fill_null(0).cast(pl.Float64).alias("strength"),
                "run_id",
                "sweep",
                "seed",
                "gc",
                "test_acc",
                "best_test_acc",
            )
        )
    runs = pl.concat(parts).sort("regularizer", "strength", "seed")
    return {"fig3_runs": runs, "fig3_by_strength": mean_ci(runs, ["regularizer", "strength"], ["gc", "test_acc"])}


def fig4_tables(con) -> dict[str, pl.DataFrame]:
    out = {}
    for var in ("lr", "batch_size"):
        # the claims' point: GC at the matched training loss, the stop eval (analysis.trends.GC_POINT)
        runs = run_summary(con, f"{FIG4_RUNS} AND {FIG4_PART[var]}").with_columns(pl.col("gc_last").alias("gc"))
        out[f"fig4_{var}_runs"] = runs.select("run_id", "sweep", "seed", var, "gc", "test_acc")
        out[f"fig4_{var}_by_setting"] = _positive_lo(mean_ci(runs, ["sweep", var], ["gc", "test_acc"]))
        curves = binned_curves(
            con,
            "evals",
            {
                "gc": "CASE WHEN x.split = 'train' THEN x.gc END",
                "test_acc": "CASE WHEN x.split = 'test' THEN x.acc END",
            },
            where="x.split IN ('train', 'test')",
            runs_where=f"{FIG4_RUNS} AND {FIG4_PART[var]}",
            by=("sweep", var),
            points=60,
        )
        out[f"fig4_{var}_curves"] = curves.select("sweep", var, "step", "gc", "test_acc", "gc_n")
    out["fig4_not_completed"] = query(
        con, f"SELECT count(*) AS n FROM runs r WHERE {sql_in(FIG4_SWEEPS)} AND r.status <> 'completed'"
    )
    return out


# Each function's tables, by name (what `analysis.result.defer` needs to compute them on first use).
FIGURE_TABLES = {
    ("fig2_diagonal", "fig2_gc_runs", "fig2_gc_by_depth"): fig2_tables,
    ("fig3_runs", "fig3_by_strength"): fig3_tables,
    tuple(f"fig4_{v}_{t}" for v in ("lr", "batch_size") for t in ("runs", "by_setting", "curves"))
    + ("fig4_not_completed",): fig4_tables,
}

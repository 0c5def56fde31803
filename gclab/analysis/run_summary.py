"""One row per completed run with the docs/EXPERIMENTS.md conventions, as a SQL subquery.

- "GC of a run" (`gc`): train-split GC at the eval step of the highest *smoothed* test accuracy
  (each eval's accuracy averaged with its `SMOOTH_NEIGHBOURS` neighbours on either side, so one
  lucky eval does not place the point; ties: earliest step; regression runs, whose accuracy is
  NaN: lowest test loss). `best_test_acc` is the raw accuracy at that step.
- `gc_last`: train-split GC at the last eval; in sweeps that stop at a matched training loss
  (docs/EXPERIMENTS.md, "Training to interpolation") that is GC at the matched loss.
- test/train loss and accuracy: at the last eval step; `gen_gap` = test loss − train loss,
  `acc_gap` = train acc − test acc.
- `gc_first`: train-split GC at the first eval (step 0 for fig2's init-only runs).
- complexity measures: train split at the last eval.
Only `status = 'completed'` runs appear. Modules embed `RUN_SUMMARY` as a CTE.

Interpolating-model claims (docs/EXPERIMENTS.md, "Training to interpolation"): in the sweeps of
`INTERPOLATING_SWEEPS` only runs that reached their stop target enter (`FITTED`, a predicate
on `rs`); `excluded` counts the completed runs left out, per sweep.
"""

from __future__ import annotations

import polars as pl

from gclab.store.db import query
from gclab.store.sweeps import INTERPOLATING_SWEEPS, sql_in

HYPER_COLUMNS = [
    "dataset",
    "model",
    "width",
    "depth",
    "activation",
    "init",
    "optimizer",
    "lr",
    "momentum",
    "batch_size",
    "l2",
    "spectral_reg",
    "flatness_reg",
    "gc_reg",
    "label_noise",
    "step_label_noise",
    "bias",
    "init_scale",
    "loss",
    "n_train",
]
# Sweeps whose claims the paper states for models at zero training error; they train to that target.
_IN_INTERPOLATING = sql_in(INTERPOLATING_SWEEPS, "sweep")
# The one filter: a run of an interpolating sweep enters only if it reached its target.
FITTED = f"(NOT {_IN_INTERPOLATING} OR coalesce(target_reached, false))"
# What each per-run column means, in words the report's captions reuse (docs/EXPERIMENTS.md).
CONVENTIONS = {
    "gc": "GC is measured on the training set at the eval step with the highest test accuracy",
    "gc_last": "GC is measured on the training set at the last eval step",
    "gc_matched": "GC is measured on the training set at the stop eval, where every run has zero training "
    "error and the same training loss (the matched training loss, docs/EXPERIMENTS.md)",
    "test_loss": "test loss at the last eval step",
    "test_acc": "test accuracy at the last eval step",
}
# The same conventions as short axis titles.
LABELS = {
    "gc": "GC at best test acc",
    "gc_last": "GC (last eval)",
    "gc_matched": "GC at matched train loss",
    "test_loss": "test loss (last eval)",
    "test_acc": "final test accuracy",
}
MEASURES = ["gc_last", "param_norm_sq", "spectral_product", "dist_from_init", "sharpness", "bfd"]

_RUN_COLS = ", ".join(
    f"r.{c}"
    for c in [
        "run_id",
        "sweep",
        "seed",
        "status",
        "steps",
        "steps_done",
        "target_reached",
        "final_train_error",
        *HYPER_COLUMNS,
    ]
)

# The paper's Fig. 3 point, made stable (docs/EXPERIMENTS.md, "GC of a run"): a raw argmax over
# evals whose accuracies differ by less than their noise picks a near-random step.
SMOOTH_NEIGHBOURS = 1
SMOOTHED_ACC = (
    f"avg(acc) OVER (PARTITION BY run_id ORDER BY step "
    f"ROWS BETWEEN {SMOOTH_NEIGHBOURS} PRECEDING AND {SMOOTH_NEIGHBOURS} FOLLOWING)"
)

RUN_SUMMARY = f"""
WITH ev AS (
    SELECT e.run_id, e.step, e.split, e.loss, e.acc, e.gc, e.param_norm_sq, e.spectral_product,
           e.dist_from_init, e.sharpness, e.bfd
    FROM evals e JOIN runs r ON e.run_id = r.run_id WHERE r.status = 'completed'
), span AS (
    SELECT run_id, min(step) AS first_step, max(step) AS last_step FROM ev GROUP BY run_id
), best AS (
    SELECT run_id, step AS best_step FROM (
        SELECT run_id, step, row_number() OVER (PARTITION BY run_id ORDER BY
               (sacc IS NULL OR isnan(sacc)), sacc DESC, loss ASC, step ASC) AS rk
        FROM (SELECT run_id, step, loss, {SMOOTHED_ACC} AS sacc FROM ev WHERE split = 'test')) WHERE rk = 1
)
SELECT {_RUN_COLS}, s.first_step, s.last_step, b.best_step,
    max(ev.acc) FILTER (WHERE ev.split = 'test' AND ev.step = b.best_step) AS best_test_acc,
    max(ev.gc) FILTER (WHERE ev.split = 'train' AND ev.step = b.best_step) AS gc,
    max(ev.gc) FILTER (WHERE ev.split = 'train' AND ev.step = s.first_step) AS gc_first,
    max(ev.loss) FILTER (WHERE ev.split = 'test' AND ev.step = s.last_step) AS test_loss,
    max(ev.acc) FILTER (WHERE ev.split = 'test' AND ev.step = s.last_step) AS test_acc,
    max(ev.loss) FILTER (WHERE ev.split = 'train' AND ev.step = s.last_step) AS train_loss,
    max(ev.acc) FILTER (WHERE ev.split = 'train' AND ev.step = s.last_step) AS train_acc,
    max(ev.gc) FILTER (WHERE ev.split = 'train' AND ev.step = s.last_step) AS gc_last,
    max(ev.param_norm_sq) FILTER (WHERE ev.split = 'train' AND ev.step = s.last_step) AS param_norm_sq,
    max(ev.spectral_product) FILTER (WHERE ev.split = 'train' AND ev.step = s.last_step) AS spectral_product,
    max(ev.dist_from_init) FILTER (WHERE ev.split = 'train' AND ev.step = s.last_step) AS dist_from_init,
    max(ev.sharpness) FILTER (WHERE ev.split = 'train' AND ev.step = s.last_step) AS sharpness,
    max(ev.bfd) FILTER (WHERE ev.split = 'train' AND ev.step = s.last_step)::DOUBLE AS bfd,
    test_loss - train_loss AS gen_gap,
    train_acc - test_acc AS acc_gap
FROM runs r JOIN span s ON r.run_id = s.run_id JOIN best b ON r.run_id = b.run_id
JOIN ev ON r.run_id = ev.run_id
WHERE r.status = 'completed'
GROUP BY ALL
"""


def with_runs(select: str) -> str:
    """`select` may read the CTE `rs` (one row per completed run, see the module docstring)."""
    return f"WITH rs AS ({RUN_SUMMARY}) {select}"


def run_summary(con, where: str = "TRUE") -> pl.DataFrame:
    """`rs` for the completed runs matching `where` (a SQL predicate over runs, alias r), by run_id."""
    runs = f"SELECT r.run_id FROM runs r WHERE {where}"
    return query(con, with_runs(f"SELECT rs.* FROM rs WHERE rs.run_id IN ({runs}) ORDER BY rs.run_id"))


# "GC of a run" alone (the query `make bench` times): train GC at the eval step of the best
# smoothed test accuracy (SMOOTHED_ACC; ties: earliest; NaN acc, i.e. regression: lowest test loss).
GC_AT_BEST_SQL = f"""
WITH e AS MATERIALIZED (
    SELECT e.run_id, e.step, e.split, e.acc, e.loss, e.gc FROM evals e WHERE e.split IN ('train', 'test')),
best AS (
    SELECT run_id, first(step ORDER BY CASE WHEN isnan(sacc) THEN NULL ELSE sacc END DESC NULLS LAST, loss, step)
           AS best_step
    FROM (SELECT run_id, step, loss, {SMOOTHED_ACC} AS sacc FROM e WHERE split = 'test') GROUP BY run_id)
SELECT b.run_id, b.best_step, t.gc
FROM best b JOIN e t ON t.run_id = b.run_id AND t.step = b.best_step AND t.split = 'train'
JOIN runs r ON r.run_id = b.run_id
WHERE r.status = 'completed'
ORDER BY b.run_id"""


EXCLUDED_SQL = f"""
SELECT sweep, count(*) AS n_completed, count(*) FILTER (WHERE NOT {FITTED}) AS n_excluded
FROM runs WHERE status = 'completed' AND {_IN_INTERPOLATING} GROUP BY sweep ORDER BY sweep
"""


def excluded_note(counts, sweep: str) -> str:
    """Statistic clause naming how many completed runs of `sweep` the FITTED filter left out
    (`counts`: the frame of EXCLUDED_SQL)."""
    row = counts.filter(counts["sweep"] == sweep)
    n = int(row["n_excluded"][0]) if row.height else 0
    total = int(row["n_completed"][0]) if row.height else 0
    return f"{n} of {total} completed runs excluded (did not reach zero training error)"

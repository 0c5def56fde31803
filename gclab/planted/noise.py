"""Run-to-run noise of a real store, as the planted stores plant it (`python -m gclab.planted.noise --data DIR`).

Per sweep, at the point where each claim reads it (GC: `analysis.trend_claims.GC_POINT`, igr at the matched
training loss, fig2 at init; test accuracy at the last eval), the residual sd of `log GC` and of test accuracy
after one mean per configuration and one per seed: the OLS of the trend and igr rows, whose seed fixed effects
absorb the per-seed shift (`EFFECTS["seed_offset"]`), so what is left is the noise those rows see. Runs that
did not reach their stop target are left out, as every claim leaves them out (`run_summary.FITTED`).

`MEASURED` holds the figures of the `make paper` store at 741fe36 (439 runs, docs/EXPERIMENTS.md "Calibration");
`planted.store` plants them per sweep unless an effect sets `seed_noise`, `acc_noise` or `output_noise`.
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np
import polars as pl

from gclab.analysis.run_summary import FITTED, HYPER_COLUMNS, with_runs
from gclab.analysis.seed_fixed_effects import seed_fixed_effects_ols
from gclab.analysis.trend_claims import GC_POINT
from gclab.analysis.trends import ABS_OUTPUT_JOIN
from gclab.store.db import connect, query, require_store_at
from gclab.store.errors import StoreError
from gclab.store.sweeps import sql_in

# Where each sweep's claims read GC (the rs column); test accuracy is read at the last eval everywhere.
GC_READ = {**GC_POINT, "fig2": "gc_first", "igr": "gc_last"}

# `python -m gclab.planted.noise --data DIR` on the make paper store at 741fe36 (439 runs): the residual sds, as
# `planted.store.EFFECTS` knobs (seed_noise: log GC; acc_noise: test accuracy; output_noise: fig2's log |output|).
# fig2 trains nothing (its accuracy is chance, no claim's); fig4_momentum is collected at [paper] scale only, so
# fig4's SGD figures stand in for it.
MEASURED = {
    "fig2": {"seed_noise": 0.083, "output_noise": 0.219},
    "fig3": {"seed_noise": 0.343, "acc_noise": 0.0071},
    "gcreg": {"seed_noise": 0.115, "acc_noise": 0.0101},
    "fig4": {"seed_noise": 0.0132, "acc_noise": 0.0049},
    "fig4_momentum": {"seed_noise": 0.0132, "acc_noise": 0.0049},
    "fig4_adam": {"seed_noise": 0.0199, "acc_noise": 0.0102},
    "igr": {"seed_noise": 0.0231, "acc_noise": 0.0054},
}

_SQL = with_runs(f"""
SELECT rs.sweep, rs.seed, {", ".join("rs." + c for c in HYPER_COLUMNS)}, rs.gc, rs.gc_last, rs.gc_first, rs.test_acc,
       p.abs_output
FROM rs {ABS_OUTPUT_JOIN}
WHERE {sql_in(list(GC_READ), "rs.sweep")} AND {FITTED}
""")
# quantity → (the column it is read from per sweep, whether it is taken on the log scale)
QUANTITIES = {"log_gc": (GC_READ, True), "test_acc": ("test_acc", False), "log_abs_output": ("abs_output", True)}


def _residual_sd(y: np.ndarray, config: pl.Series, seed: pl.Series) -> tuple[float, int]:
    """(residual sd, its degrees of freedom) of y on configuration and seed fixed effects."""
    dummies = config.to_dummies(drop_first=True).to_numpy().astype(float)
    fit = seed_fixed_effects_ols(y, dummies, seed)
    return math.sqrt(float(fit.scale)), int(fit.df_resid)


def measure(con) -> pl.DataFrame:
    """sweep, quantity (`QUANTITIES`), residual_sd, df, n_runs: one row per sweep and quantity it has."""
    runs = query(con, _SQL).with_columns(
        pl.concat_str([pl.col(c).cast(pl.String).fill_null("") for c in HYPER_COLUMNS], separator="|").alias("config")
    )
    rows = []
    for (sweep,), df in runs.sort("sweep").group_by("sweep", maintain_order=True):
        for quantity, (col, log) in QUANTITIES.items():
            col = col[sweep] if isinstance(col, dict) else col
            ok = df.filter(pl.col(col).is_not_null() & pl.col(col).is_finite() & (pl.col(col) > 0))
            if ok.height <= ok["config"].n_unique() + ok["seed"].n_unique():
                continue
            y = ok[col].to_numpy()
            sd, dof = _residual_sd(np.log(y) if log else y, ok["config"], ok["seed"])
            rows.append({"sweep": sweep, "quantity": quantity, "residual_sd": sd, "df": dof, "n_runs": ok.height})
    return pl.DataFrame(
        rows,
        schema={
            "sweep": pl.String,
            "quantity": pl.String,
            "residual_sd": pl.Float64,
            "df": pl.Int64,
            "n_runs": pl.Int64,
        },
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gclab.planted.noise", description=(__doc__ or "").partition("\n")[0]
    )
    parser.add_argument("--data", default="data", help="run store folder (default ./data)")
    args = parser.parse_args(argv)
    try:
        require_store_at(args.data)
        with connect(args.data) as con:
            table = measure(con)
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with pl.Config(tbl_rows=-1):
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

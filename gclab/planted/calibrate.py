"""`python -m gclab.planted.calibrate` (`make calibrate`): how often each claim test is wrong.

Every claim test runs on `--null` planted stores with no effect (false-positive rate: how often
it says `supported`, with a Clopper–Pearson 95% CI; and how often `contradicted`) and on
`--effect` stores with the effect of `CASES` planted in the paper's direction (power at that effect:
how often `supported`). Where a case can plant an effect of exactly the rows' δ (`Case.at_delta`,
docs/EXPERIMENTS.md "Families and smallest effects of interest"), `--null` more stores carry it:
how often such a row is called `absent` there (TOST's level: target ≤ α + 0.02) and how often
`supported` (the power at δ, which is then the power target, 0.8: δ is the smallest effect the row
must find; the planted effect, 2.5–5× δ, only says the test works). Rows without a δ plant keep the
power at the planted effect as their target. Stores live in in-memory DuckDB
(`planted.store.planted_connection`), so the analysis SQL and statistics are exactly those of
`gclab claims`, module by module,
before Holm's correction (each test's own calibration; Holm only makes paper rows stricter).
Writes `<out>/calibration.json`, which the report's "How far to trust these verdicts" shows.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import polars as pl
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from gclab.analysis import bfd, double_descent, fig1, igr, theorem
from gclab.analysis.claims import MODULES
from gclab.analysis.deltas import DELTAS
from gclab.analysis.result import ABSENT, ALPHA, CONTRADICTED, INSUFFICIENT, SUPPORTED
from gclab.planted.store import EFFECTS, planted_connection, shape_of, sweep_runs
from gclab.planted.tables import parabola_probes
from gclab.store.sweeps import TREND_SWEEPS

# fig4's runs carry both the trend effects and igr's h/b surface (analysis.igr.SWEEPS): each case plants its own
# and holds the other at 0, so a null is a null and "exactly δ" is exactly δ.
NO_IGR, NO_TREND = {"igr_slope": 0.0}, {"trend_slope": 0.0}

# Effects of exactly δ (analysis.deltas): trends and igr on the log-GC scale over the grid; bfd as fractions of
# the ceiling (the FFD row's value, FFD/ceiling − 0.95, is +δ when the FFD sits FFD_MARGIN − δ below it).
D_TREND, D_ACC, D_IGR, D_BFD = (DELTAS[k].delta for k in ("fig3:gc", "fig4:test_acc", "igr:elasticity", "bfd:fraction"))
CADENCE = {"steps": 20, "log_every": 10, "eval_every": 10}  # few rows per run; the statistics see run summaries
# fig1's own-arc row (fig1.OWN_CLAIM, around its bound 1.1 with δ = 0.05): the planted ripple amplitudes whose mean
# largest own-polyline ratio over a run's evals (at CADENCE) is exactly 1.1 (the null) and 1.1 − δ; solved with
# `own_arc_ratio` (scipy brentq, 1,000 runs; tests/planted re-checks them); the default 0.01 gives ≈ 1.04.
RIPPLE_AT_BOUND, RIPPLE_AT_DELTA = 0.0385, 0.0249
TARGET_FPR, TARGET_POWER = ALPHA + 0.02, 0.8
FILE = "calibration.json"
# Rows whose verdict is not a significance test: listed, not calibrated.
NOT_CALIBRATED = {
    igr.IDENTITY_CLAIM: "deterministic identity check (any row above 1e-6 contradicts)",
    igr.RATIO_CLAIM: "a no-effect condition: only ever contradicted; its false-contradiction rate is a unit test",
    igr.STEP3_CLAIM: "a condition on the logged Eq. 6 terms, whose planted alignments have no null to plant; "
    "its t-test is checked against scipy in a unit test",
    theorem.VIOLATION_CLAIM: "deterministic check (any violating row contradicts)",
    double_descent.LOCATION_CLAIM: "peak location, only tested after a significant peak",
    **{
        bfd.PLATEAU_CLAIM.format(dataset=d): "deterministic check (any run off its plateau contradicts)"
        for d in bfd.DATASETS
    },
    fig1.ARC_CLAIM: "TOST equivalence at a margin (level α by construction); its failures are unit tests",
}


@dataclass(frozen=True)
class Case:
    """One group of claim tests: the modules that decide them, on stores of `sweeps`."""

    name: str
    modules: tuple[str, ...]  # names in analysis.claims.MODULES
    sweeps: tuple[str, ...]
    null: dict
    effect: dict
    tables: tuple[str, ...] = ("runs", "evals")  # what the tests read
    at_delta: dict | None = None  # effects planting exactly each row's δ (absent rate, power at δ)
    power_target: bool = True  # False: a null-only case (power shown, not a target)
    only: tuple[str, ...] = ()  # the claims this case calibrates (others of its modules have their own case); () all


CASES = (
    Case(
        "trends",
        ("trends",),
        TREND_SWEEPS,
        {"trend_slope": 0.0, "acc_slope": 0.0, "output_shrink": 0.0, **NO_IGR},
        {"trend_slope": 0.3, "acc_slope": 0.03, "output_shrink": 0.3, **NO_IGR},
        ("runs", "evals", "probes"),
        at_delta={"trend_slope": D_TREND, "acc_slope": D_ACC, "output_shrink": D_TREND, **NO_IGR},
    ),
    Case(
        "fig5",
        ("double_descent", "ucurve"),
        ("fig5",),
        {"fig5_peak": 0.0, "u_curvature": 0.0},
        {"fig5_peak": 1.0, "u_curvature": 0.4},
    ),
    # GC over three decades, 10× the test-loss noise on the high-GC arm: the null the U test must survive.
    Case(
        "fig5 heteroscedastic",
        ("ucurve",),
        ("fig5",),
        {"fig5_peak": 2.0, "u_curvature": 0.0, "fig5_noise_ratio": 10.0},
        {"fig5_peak": 2.0, "u_curvature": 0.4, "fig5_noise_ratio": 10.0},
        power_target=False,
    ),
    Case(
        "igr",
        ("igr",),
        igr.SWEEPS,
        {"igr_slope": 0.0, **NO_TREND},
        {"igr_slope": -0.1, **NO_TREND},
        at_delta={"igr_slope": -D_IGR, **NO_TREND},
    ),
    Case(
        "bfd",
        ("bfd",),
        ("bfd",),
        {"bfd_drop": 0.0, "bfd_random_gap": 0.0, "ffd_deficit": bfd.FFD_MARGIN},
        {"bfd_drop": 0.05, "bfd_random_gap": 0.02, "ffd_deficit": 0.0},
        ("runs", "evals", "fdim"),
        at_delta={"bfd_drop": D_BFD, "bfd_random_gap": 0.0, "ffd_deficit": bfd.FFD_MARGIN - D_BFD},
    ),
    Case("measures", ("measures",), ("gcreg",), {"measure_corr": 0.0}, {"measure_corr": 0.5}),
    Case(
        "theorem",
        ("theorem",),
        ("thm51",),
        {"thm_slope_T": -0.9, "thm_slope_grad": -0.9},
        {"thm_slope_T": -0.7, "thm_slope_grad": -1.1},
        ("runs", "evals", "theorem"),
    ),
    Case("fig1", ("fig1",), ("fig1",), {"fig1_gc_start": 0.1}, {"fig1_gc_start": 0.05}, only=(fig1.GC_CLAIM,)),
    # The probe curves at every eval, as collection writes them (probe_points), which the own-arc row reads.
    Case(
        "fig1 own arc",
        ("fig1",),
        ("fig1",),
        {"fig1_ripple": RIPPLE_AT_BOUND},
        {"fig1_ripple": EFFECTS["fig1_ripple"]},
        ("runs", "evals", "probes"),
        at_delta={"fig1_ripple": RIPPLE_AT_DELTA},
        only=(fig1.OWN_CLAIM,),
    ),
)


def own_arc_ratio(ripple: float, *, n: int = 1000, seed: int = 0) -> float:
    """Mean over `n` planted fig1 runs (at CADENCE) of the largest own-polyline arc ratio over a run's evals,
    with the planted ripple amplitude `ripple`: what fig1.OWN_CLAIM averages over seeds."""
    run = sweep_runs("fig1", seeds=1, cadence=CADENCE)[0]
    n_train = shape_of(run)[2]
    frames = [
        pl.DataFrame(
            parabola_probes(np.random.default_rng([seed, i]), f"r{i}", run.steps, run.eval_every, n_train, ripple)
        ).with_columns(seed=pl.lit(i), n_train=pl.lit(n_train))
        for i in range(n)
    ]
    largest = fig1.own_ratios(pl.concat(frames)).group_by("run_id").agg(pl.col("ratio").max())
    return float(largest["ratio"].mean())


def verdicts(case: Case, effects: dict, rng_seed: int) -> pl.DataFrame:
    """claim, kind, experiment, verdict, delta, n_seeds of every calibrated row of one planted store."""
    con = planted_connection(
        sweeps=case.sweeps, cadence=CADENCE, rng_seed=rng_seed, effects=effects, tables=case.tables
    )
    try:
        frames = [MODULES[m].analyze(con).claims for m in case.modules]
    finally:
        con.close()
    rows = pl.concat(frames).select("claim", "kind", "experiment", "verdict", "delta", "n_seeds")
    rows = rows.filter(pl.col("claim").is_in(list(case.only))) if case.only else rows
    return rows.filter(~pl.col("claim").is_in(list(NOT_CALIBRATED)))


def rates(case: Case, effects: dict, n: int, seed0: int, pool=None) -> pl.DataFrame:
    """Per claim: n stores, times supported, contradicted, absent and insufficient over `n` planted stores,
    and whether the row declares a δ (so it can be absent)."""
    one = partial(verdicts, case, effects)
    seeds = range(seed0, seed0 + n)
    runs = pl.concat(list(pool.map(one, seeds, chunksize=8) if pool else map(one, seeds)))
    return runs.group_by("claim", "kind", "experiment", maintain_order=True).agg(
        pl.len().alias("n"),
        (pl.col("verdict") == SUPPORTED).sum().alias("supported"),
        (pl.col("verdict") == CONTRADICTED).sum().alias("contradicted"),
        (pl.col("verdict") == ABSENT).sum().alias("absent"),
        (pl.col("verdict") == INSUFFICIENT).sum().alias("insufficient"),
        pl.col("delta").is_not_null().any().alias("has_delta"),
        pl.col("n_seeds").median().alias("n_seeds"),
    )


def _ci(k: int, n: int) -> list[float]:
    return [float(v) for v in proportion_confint(k, n, alpha=0.05, method="beta")]


def seeds_for_target(power: float, n_seeds: float, n_stores: int) -> int | None:
    """Seeds per configuration that would lift `power` (observed with `n_seeds`) to TARGET_POWER, by the
    normal approximation: the test's noncentrality grows as √seeds, z = Φ⁻¹(power) + z_{1−α/2}.
    An estimate for the docs' cost of more seeds (it ignores the t's degrees of freedom); None if unknown."""
    if not n_seeds or n_seeds < 1:
        return None
    p = min(max(power, 0.5 / n_stores), 1 - 0.5 / n_stores)  # a rate of 0 or 1 is off the probit's scale
    z_now = stats.norm.ppf(p) + stats.norm.ppf(1 - ALPHA / 2)
    z_need = stats.norm.ppf(TARGET_POWER) + stats.norm.ppf(1 - ALPHA / 2)
    if z_now <= 0:
        return None
    return max(int(n_seeds), math.ceil(n_seeds * (z_need / z_now) ** 2))


def calibrate_case(case: Case, n_null: int, n_effect: int, pool=None) -> list[dict]:
    null, power = rates(case, case.null, n_null, 10_000, pool), rates(case, case.effect, n_effect, 20_000, pool)
    keys = ["claim", "kind", "experiment"]
    joined = null.join(power.drop("has_delta"), on=keys, suffix="_effect")
    if case.at_delta is not None:
        at = rates(case, case.at_delta, n_null, 30_000, pool).drop("has_delta")
        joined = joined.join(at, on=keys, suffix="_delta", how="left")
    out = []
    for r in joined.iter_rows(named=True):
        fpr, pw = r["supported"] / r["n"], r["supported_effect"] / r["n_effect"]
        row = {
            "claim": r["claim"],
            "kind": r["kind"],
            "experiment": r["experiment"],
            "case": case.name,
            "null_effects": case.null,
            "planted_effects": case.effect,
            "n_null": r["n"],
            "false_positive_rate": fpr,
            "fpr_ci": _ci(r["supported"], r["n"]),
            "contradicted_rate_null": r["contradicted"] / r["n"],
            "absent_rate_null": r["absent"] / r["n"],
            "insufficient_null": r["insufficient"],
            "n_effect": r["n_effect"],
            "power": pw,
            "power_ci": _ci(r["supported_effect"], r["n_effect"]),
            "power_target": case.power_target,
        }
        power_ok = pw >= TARGET_POWER
        if case.at_delta is not None and r["has_delta"] and r.get("n_delta"):
            n_d = r["n_delta"]
            pw_d = r["supported_delta"] / n_d
            row |= {
                "delta_effects": case.at_delta,
                "n_delta": n_d,
                "absent_at_delta": r["absent_delta"] / n_d,
                "absent_at_delta_ci": _ci(r["absent_delta"], n_d),
                "power_at_delta": pw_d,
                "power_at_delta_ci": _ci(r["supported_delta"], n_d),
                "n_seeds": r["n_seeds"],
                "seeds_for_power_at_delta": seeds_for_target(pw_d, r["n_seeds"], n_d),
            }
            power_ok = pw_d >= TARGET_POWER
        row["power_target_at"] = "delta" if "n_delta" in row else "planted effect"
        ok = fpr <= TARGET_FPR and row.get("absent_at_delta", 0.0) <= TARGET_FPR
        out.append(row | {"meets_target": ok and (power_ok or not case.power_target)})
    return out


def calibrate(n_null: int = 200, n_effect: int = 100, cases=CASES, workers: int = 1, log=print) -> dict:
    tests = []
    with ProcessPoolExecutor(workers) if workers > 1 else contextlib.nullcontext() as pool:
        for case in cases:
            t0 = time.perf_counter()
            tests += calibrate_case(case, n_null, n_effect, pool)
            log(f"calibrate: {case.name}: {time.perf_counter() - t0:.0f} s")
    tests += [{"claim": c, "calibrated": False, "why": why} for c, why in NOT_CALIBRATED.items()]
    return {
        "alpha": ALPHA,
        "target_fpr": TARGET_FPR,
        "target_power": TARGET_POWER,
        "n_null": n_null,
        "n_effect": n_effect,
        "default_effects": EFFECTS,
        "cadence": CADENCE,
        "tests": tests,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gclab.planted.calibrate", description=(__doc__ or "").partition("\n")[0]
    )
    parser.add_argument("--out", default="reports", help="folder for calibration.json (default ./reports)")
    parser.add_argument("--null", type=int, default=200, help="null stores per test (default 200)")
    parser.add_argument("--effect", type=int, default=100, help="planted-effect stores per test (default 100)")
    parser.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    parser.add_argument("--case", action="append", choices=[c.name for c in CASES], help="only these groups")
    args = parser.parse_args(argv)
    if args.null < 1 or args.effect < 1:
        print("error: --null and --effect must be ≥ 1 (e.g. --null 200 --effect 100)", file=sys.stderr)
        return 2
    cases = [c for c in CASES if not args.case or c.name in args.case]
    result = calibrate(args.null, args.effect, cases, workers=args.workers)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / FILE).write_text(json.dumps(result, indent=1))
    bad = [t["claim"] for t in result["tests"] if t.get("meets_target") is False]
    print(
        f"calibration: {out / FILE}; {len(result['tests'])} tests, {len(bad)} miss the target"
        + (f": {bad}" if bad else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

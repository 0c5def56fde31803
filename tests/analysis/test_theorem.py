import numpy as np
import polars as pl
import pytest
import statsmodels.api as sm

from gclab.analysis import theorem
from gclab.analysis.result import ALPHA
from gclab.planted.calibrate import CADENCE
from gclab.planted.store import sweep_runs
from gclab.store.db import connect
from gclab.store.layout import RunFolder
from tests._helpers.planted import assert_calibrated, build, null_counts, verdicts

N_RUNS = len(sweep_runs("thm51"))

CONDITION = pl.col("claim").str.contains("shrinks slower")


def test_no_violations_and_the_condition_holds(tmp_path):
    a = theorem.analyze(build(tmp_path, sweeps=["thm51"]))
    assert a.claims["verdict"].to_list() == ["supported", "supported"]
    assert a.claims["kind"].to_list() == ["check", "condition"]
    assert a.claims["value"][0] == 0 and a.claims["ci_high"][0] < 0.01  # Clopper–Pearson upper end
    slopes = a.tables["slopes"]
    assert slopes.height == N_RUNS and (slopes["slope_T_lo"] <= slopes["slope_T"]).all()
    tight = a.tables["tightness"]
    assert set(tight["depth"]) == {r.depth for r in sweep_runs("thm51")}
    # The quantiles against numpy on the raw Parquet rows, read without DuckDB.
    depth = {r.run_id: r.depth for r in sweep_runs("thm51", cadence=CADENCE)}
    raw = pl.concat(pl.read_parquet(f) for f in tmp_path.glob("runs/sweep=thm51/run_id=*/theorem.parquet"))
    raw = raw.with_columns(depth=pl.col("run_id").replace_strict(depth))
    for row in tight.iter_rows(named=True):
        group = raw.filter((pl.col("depth") == row["depth"]) & (pl.col("step") == row["step"]))
        for b in ("bound", "bound_tight"):
            ratio = (group[b] / group["gc_x"]).to_numpy()
            np.testing.assert_allclose([row[f"{b}_q{q}"] for q in (10, 50, 90)], np.quantile(ratio, [0.1, 0.5, 0.9]))


def test_planted_violations_are_counted(tmp_path):
    a = theorem.analyze(build(tmp_path, sweeps=["thm51"], effects={"thm_violations": 2}))
    row = a.claims.row(0, named=True)
    assert row["verdict"] == "contradicted" and row["value"] == 2 * N_RUNS  # 2 rows in each run
    assert a.tables["violations"].height == 2 * N_RUNS and (a.tables["violations"]["ratio"] > 1).all()


def test_a_violation_is_caught_even_when_holds_says_true(tmp_path):
    # One hand-written run whose `holds_tight` flag lies: the check is recomputed in SQL.
    folder = RunFolder(tmp_path, "thm51", "liar")
    folder.start()
    folder.write(
        "theorem",
        {
            "run_id": ["liar"] * 2,
            "step": [0, 0],
            "split": ["train"] * 2,
            "example": [0, 1],
            "gc_x": [1.0, 2.0 + 1e-3],
            "grad_theta_sq": [4.0, 4.0],
            "transfer_sq_sum": [0.2, 0.2],
            "transfer_sq_sum_tight": [2.0, 2.0],
            "bound": [20.0, 20.0],
            "bound_tight": [2.0, 2.0],
            "holds_tight": [True, True],
        },
    )
    folder.finish({"run_id": "liar", "sweep": "thm51", "status": "completed", "seed": 0, "depth": 1})
    a = theorem.analyze(connect(tmp_path, warn=False))
    row = a.claims.row(0, named=True)
    assert row["verdict"] == "contradicted" and row["value"] == 1 and "liar" in row["statistic"]
    assert a.tables["violations"]["example"].to_list() == [1]
    assert a.claims.filter(CONDITION)["verdict"].to_list() == ["insufficient data"]


def test_sum_t_shrinking_faster_is_contradicted():
    got = verdicts(
        theorem,
        keep=lambda c: c.filter(CONDITION),
        sweeps=["thm51"],
        effects={"thm_slope_T": -1.5, "thm_slope_grad": -0.3},
    )
    assert got == ["contradicted"]


def test_equal_shrink_rates_are_calibrated():
    counts = null_counts(
        theorem,
        40,
        keep=lambda c: c.filter(CONDITION),
        sweeps=["thm51"],
        effects={"thm_slope_T": -1.5, "thm_slope_grad": -1.5},
    )
    assert_calibrated(counts, 40)


def ols_slopes(g: pl.DataFrame) -> dict:
    """Brute-force reference: one statsmodels OLS per run and quantity, as `theorem` fitted them before."""
    out = {"run_id": g["run_id"][0], "seed": g["seed"][0], "depth": g["depth"][0], "n_steps": g.height}
    X = sm.add_constant(g["step"].cast(pl.Float64).to_numpy(), has_constant="add")
    for name, col in (("T", "t_sq"), ("grad", "g_sq")):
        if g.height < theorem.MIN_STEPS:
            out |= {f"slope_{name}": None, f"slope_{name}_lo": None, f"slope_{name}_hi": None}
            continue
        fit = sm.OLS(np.log(g[col].to_numpy()), X).fit()
        lo, hi = fit.conf_int(ALPHA)[1]
        out |= {f"slope_{name}": float(fit.params[1]), f"slope_{name}_lo": float(lo), f"slope_{name}_hi": float(hi)}
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_per_run_slopes_equal_one_ols_per_run(seed):
    # 1–9 eval steps per run (so some below MIN_STEPS), irregular steps up to 10^5, exponential decay plus noise
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(300):
        steps = np.sort(rng.choice(100_000, size=int(rng.integers(1, 10)), replace=False))
        rate_t, rate_g = rng.normal(-1e-4, 5e-5, 2)
        for s in steps:
            t_sq, g_sq = np.exp(rate_t * s + rng.normal(scale=0.3)), np.exp(rate_g * s + rng.normal(scale=0.3))
            run = {"run_id": f"r{r:03d}", "seed": r % 4, "depth": 1 + r % 3}
            rows.append(run | {"step": int(s), "t_sq": t_sq, "g_sq": g_sq})
    series = pl.DataFrame(rows).sample(fraction=1.0, shuffle=True, seed=seed)  # the query's row order is arbitrary
    got = theorem._slopes(series)
    want = [ols_slopes(g) for _, g in series.sort("run_id", "step").group_by("run_id", maintain_order=True)]
    assert got["run_id"].to_list() == [w["run_id"] for w in want]
    assert got["slope_T"].null_count() > 0 and got["slope_T"].is_not_null().sum() > 100
    for g, w in zip(got.iter_rows(named=True), want):
        assert g.keys() == w.keys()
        for k, v in w.items():
            if isinstance(v, float):
                assert g[k] == pytest.approx(v, rel=1e-10, abs=1e-15), (w["run_id"], k)
            else:
                assert g[k] == v, (w["run_id"], k)

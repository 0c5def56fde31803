"""planted.noise: the residual sds it measures are the ones planted, and equal the dummy-variable regression's."""

import math

import numpy as np
import polars as pl
import pytest
import statsmodels.api as sm

from gclab.planted import noise
from gclab.planted.calibrate import CADENCE
from gclab.planted.store import ASSUMED_NOISE, EFFECTS, write_planted_store
from gclab.planted.store import noise as planted_sd
from gclab.store.db import connect, query

PLANTED = {"seed_noise": 0.05, "acc_noise": 0.02, "output_noise": 0.15}
SWEEPS = ("fig2", "fig4", "gcreg")


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    path = tmp_path_factory.mktemp("noise")
    write_planted_store(path, sweeps=SWEEPS, seeds=6, cadence=CADENCE, effects={**PLANTED, "diverged": 0})
    return connect(path, warn=False)


def test_measures_the_planted_sds(con):
    got = {(r["sweep"], r["quantity"]): r for r in noise.measure(con).iter_rows(named=True)}
    # fig2 trains nothing (its accuracy is planted chance, not a claim's); fig4 and gcreg have no probes
    assert set(got) == {
        ("fig2", "log_gc"),
        ("fig2", "test_acc"),
        ("fig2", "log_abs_output"),
        ("fig4", "log_gc"),
        ("fig4", "test_acc"),
        ("gcreg", "log_gc"),
        ("gcreg", "test_acc"),
    }
    want = {
        "log_gc": PLANTED["seed_noise"],
        "test_acc": PLANTED["acc_noise"],
        "log_abs_output": PLANTED["output_noise"],
    }
    for (sweep, quantity), r in got.items():
        if (sweep, quantity) == ("fig2", "test_acc"):
            continue
        # a sample sd on df degrees of freedom: within 4 standard errors (sd / sqrt(2 df)) of the planted one
        se = want[quantity] / math.sqrt(2 * r["df"])
        assert abs(r["residual_sd"] - want[quantity]) < 4 * se, (sweep, quantity, r)


def test_residual_sd_is_the_dummy_regressions(con):
    """Brute force: OLS of y on one dummy per configuration and per seed (statsmodels, full design)."""
    runs = query(con, noise._SQL).filter(pl.col("sweep") == "gcreg")
    y = np.log(runs["gc"].to_numpy())  # gcreg reads GC at best smoothed test accuracy
    config = runs["gc_reg"].cast(pl.String).to_dummies().to_numpy()
    seed = runs["seed"].cast(pl.String).to_dummies(drop_first=True).to_numpy()
    fit = sm.OLS(y, np.column_stack([config, seed]).astype(float)).fit()
    sd, dof = noise._residual_sd(y, runs["gc_reg"].cast(pl.String), runs["seed"])
    assert dof == fit.df_resid
    assert sd == pytest.approx(math.sqrt(fit.scale), rel=1e-10)


def test_planted_noise_is_measured_unless_given():
    fx = dict(EFFECTS)
    assert planted_sd(fx, "fig4", "seed_noise") == noise.MEASURED["fig4"]["seed_noise"]
    assert planted_sd(fx, "fig2", "output_noise") == noise.MEASURED["fig2"]["output_noise"]
    assert planted_sd(fx, "fig1", "seed_noise") == ASSUMED_NOISE["seed_noise"]  # never measured
    assert planted_sd({**fx, "acc_noise": 0.03}, "fig4", "acc_noise") == 0.03


def test_a_missing_store_is_one_line_and_exit_2(tmp_path, capsys):
    assert noise.main(["--data", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")

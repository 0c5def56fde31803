from analysis import bfd
from planted.store import sweep_runs
from tests.analysis.conftest import assert_calibrated, build, null_counts, verdicts

N_RUNS = len(sweep_runs("bfd"))
NULL = {"bfd_drop": 0.0, "bfd_random_gap": 0.0}


def test_bfd_decreases_and_random_inputs_are_higher(tmp_path):
    a = bfd.analyze(build(tmp_path, sweeps=["bfd"]))
    assert a.claims["verdict"].to_list() == ["supported"] * 4
    assert set(a.claims["kind"]) == {"paper"} and a.claims["source"].str.contains("seed 001").all()
    assert (a.tables["per_run_trend"]["kendall_tau"] < 0).all()
    last = a.tables["last_eval"]
    assert last.height == N_RUNS and (last["bfd_train"] < last["bfd_random"]).all()


def test_bfd_rising_and_random_inputs_lower_are_contradicted():
    assert verdicts(bfd, sweeps=["bfd"], effects={"bfd_drop": -0.1, "bfd_random_gap": -0.08}) == ["contradicted"] * 4


def test_bfd_nulls_are_calibrated():
    counts = null_counts(bfd, 30, sweeps=["bfd"], effects=NULL)
    assert_calibrated(counts, 120)


def test_too_few_runs_is_insufficient(tmp_path):
    a = bfd.analyze(build(tmp_path, sweeps=["bfd"], seeds=1))
    one_seed = len(sweep_runs("bfd", seeds=1))
    assert set(a.claims["verdict"]) == {"insufficient data"} and (a.claims["n_runs"] == one_seed).all()

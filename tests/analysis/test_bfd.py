from analysis import bfd
from tests.analysis.conftest import build, calibrated, null_hits


def test_bfd_decreases_and_random_inputs_are_higher(tmp_path):
    a = bfd.analyze(build(tmp_path, sweeps=["bfd"]))
    assert a.claims["verdict"].to_list() == ["supported"] * 4
    assert (a.tables["per_run_trend"]["kendall_tau"] < 0).all()
    last = a.tables["last_eval"]
    assert last.height == 6 and (last["bfd_train"] < last["bfd_random"]).all()


def test_bfd_nulls_are_calibrated(tmp_path_factory):
    hits, tests = null_hits(tmp_path_factory, bfd, 10, sweeps=["bfd"], seeds=5,
                            effects={"bfd_drop": 0.0, "bfd_random_gap": 0.0})
    assert tests == 40 and calibrated(hits, tests), (hits, tests)


def test_too_few_runs_is_insufficient(tmp_path):
    a = bfd.analyze(build(tmp_path, sweeps=["bfd"], seeds=1))
    assert set(a.claims["verdict"]) == {"insufficient data"} and (a.claims["n_runs"] == 2).all()

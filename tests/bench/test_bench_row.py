"""A bench row end to end (gclab/bench/peers.py: checks, interleaved timings, targets met / not met), on tiny
nets: one the engine takes, one it refuses for good (train-mode BatchNorm mixes the examples of a batch);
the targets table's verdicts; and `gclab bench` refusing bad input."""

import json

import pytest
from torch import nn

from gclab.bench.naive import NAIVE
from gclab.bench.nets import BenchNet
from gclab.bench.peers import PEERS, bench_net
from gclab.bench.targets import SUITE_MAX_X_PLAIN, check, suite_max
from tests._helpers.cli import run_cli


class AlwaysTrainBatchNorm(nn.BatchNorm1d):
    """A BatchNorm that stays in train mode through model.eval(): per-example quantities are undefined."""

    def train(self, mode: bool = True):
        return super().train(True)


def _mlp():
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 10))


def _batch_mixing():
    return nn.Sequential(nn.Linear(6, 16), AlwaysTrainBatchNorm(16), nn.ReLU(), nn.Linear(16, 10))


def test_row_on_a_net_the_engine_takes_times_every_method_and_checks_every_target():
    pytest.importorskip("opacus", reason="the bench extra: pip install gclab[bench]")
    pytest.importorskip("backpack", reason="the bench extra: pip install gclab[bench]")
    row = bench_net(BenchNet("tiny", _mlp, (6,), 8, "mlp", 2, "test only"), rounds=2, seconds_per_block=0.001)
    assert row["refused"] == {} and row["wrong"] == {}
    ran = {"plain", "suite", "gc", "norms", *NAIVE, *PEERS}
    assert set(row["ms"]) == ran and all(v > 0 for v in row["ms"].values())
    assert all(d <= 1e-3 for d in row["checks"]["max_rel_diff"].values())
    assert row["checks"]["norms_reference"] == "norms"
    assert {t: type(v["met"]) for t, v in row["targets"].items()} == {"suite": bool, "gc": bool, "norms": bool}
    assert row["targets"]["suite"]["max_x_plain"] == SUITE_MAX_X_PLAIN["mlp"]
    fastest_peer = min(PEERS, key=row["ms"].__getitem__)
    assert row["targets"]["norms"]["fastest"] == fastest_peer
    # the cost model's method for GC alone, beside both baselines' measured times
    assert row["gc_method"]["chosen"] == "chain"
    assert set(row["gc_method"]["ms"]) == {"gc", *NAIVE}
    held = all(row["ms"]["gc"] <= row["ms"][n] for n in NAIVE)
    assert row["gc_method"]["held"] is held and row["gc_method"]["same_computation_as"] is None
    json.dumps(row)  # the row goes to reports/bench.json as is


def test_row_on_a_net_the_engine_refuses_records_the_reason_and_times_the_rest():
    net = BenchNet("mixing", _batch_mixing, (6,), 8, "transformer", 2, "test only")
    row = bench_net(net, rounds=2, seconds_per_block=0.001)
    for ours in ("suite", "norms"):
        reason = row["refused"][ours]["refused"]
        assert "BatchNorm" in reason and "\n" not in reason
        assert ours not in row["ms"]
    assert {"plain", *NAIVE} <= set(row["ms"])
    assert row["gc_method"] is None  # our GC refused too: no method to check
    assert row["targets"]["suite"]["met"] is None and "refused" in row["targets"]["suite"]["why"]
    assert row["targets"]["norms"]["met"] is None
    # the transformer family's target is the net's counted floor
    assert row["targets"]["suite"]["max_x_plain"] == round(row["flop_floor"]["floor_suite_x_plain"], 2)


@pytest.mark.parametrize(
    ("med", "met"),
    [
        ({"plain": 1.0, "suite": 2.9, "gc": 1.0, "naive_a": 1.0, "norms": 0.5, "peer_a": 0.6}, (True, True, True)),
        ({"plain": 1.0, "suite": 3.1, "gc": 1.1, "naive_a": 1.0, "norms": 0.7, "peer_a": 0.6}, (False, False, False)),
        ({"plain": 1.0, "gc": 1.0}, (None, None, None)),
    ],
)
def test_targets_check_says_met_not_met_or_not_checked(med, met):
    got = check(family="mlp", med=med, floor=None, naive=["naive_a"], peers=["peer_a"])
    assert (got["suite"]["met"], got["gc"]["met"], got["norms"]["met"]) == met


def test_targets_take_the_fastest_rival_and_the_floor():
    med = {"plain": 1.0, "suite": 6.0, "gc": 2.0, "slow": 3.0, "fast": 1.5, "norms": 1.0, "p1": 2.0, "p2": 0.9}
    got = check(
        family="lstm", med=med, floor={"floor_suite_x_plain": 7.216}, naive=["slow", "fast"], peers=["p1", "p2"]
    )
    assert got["suite"]["max_x_plain"] == 7.22 and got["suite"]["met"] is True
    assert got["gc"]["fastest"] == "fast" and got["gc"]["met"] is False
    assert got["norms"]["fastest"] == "p2" and got["norms"]["met"] is False
    assert suite_max("lstm", None) is None
    with pytest.raises(ValueError, match="SUITE_MAX_X_PLAIN"):
        suite_max("no_such_family", None)


def test_cli_refuses_an_unknown_net_and_writes_nothing(tmp_path):
    out = tmp_path / "reports"
    res = run_cli("bench", "--quick", "--only", "peers", "--nets", "no_such_net", "--out", out)
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "no_such_net" in res.stderr and "mlp" in res.stderr
    assert not out.exists()

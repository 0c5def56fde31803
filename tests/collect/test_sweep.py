"""Sweep files: expansion, overrides and one-line errors that leave data/ byte-identical."""

import pytest

from gclab.collect.config import RunConfig
from gclab.collect.sweep import ConfigError, load_sweep, parse_overrides, shipped_sweeps
from gclab.store.layout import RunFolder
from tests._helpers.cli import run_cli, tree_bytes

ALL = ("fig1", "fig2", "fig3", "fig4", "fig4_momentum", "fig4_adam", "fig5", "gcreg", "thm51", "igr", "bfd")


def test_every_catalog_sweep_ships_and_expands():
    assert set(ALL) <= set(shipped_sweeps())
    for name in ALL:
        sweep = load_sweep(name)
        assert sweep.runs and sweep.description and all(c.sweep == name for c in sweep.runs)
        assert len({c.run_id for c in sweep.runs}) == len(sweep.runs)


def test_paper_scale_variant_differs():
    cpu, paper = load_sweep("fig3"), load_sweep("fig3", scale="paper")
    assert {c.model for c in paper.runs} == {"resnet18"} and {c.dataset for c in paper.runs} == {"cifar10"}
    assert not {c.run_id for c in cpu.runs} & {c.run_id for c in paper.runs}


def test_grids_union_and_seeds(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text("seeds = [0, 1]\n[base]\nsteps = 5\n[[grids]]\nlr = [0.1, 0.2]\n[[grids]]\nbatch_size = [8, 64]\n")
    runs = load_sweep(str(f)).runs
    # (lr 0.1, 0.2 at batch 64) ∪ (batch 8, 64 at lr 0.05): 4 distinct configs × 2 seeds
    assert len(runs) == 8
    assert {(c.lr, c.batch_size) for c in runs} == {(0.1, 64), (0.2, 64), (0.05, 8), (0.05, 64)}


def test_overrides_parse_and_apply():
    assert parse_overrides(["steps=2000", "lr=0.05", "activation=tanh", "bias=false"]) == {
        "steps": 2000,
        "lr": 0.05,
        "activation": "tanh",
        "bias": False,
    }
    runs = load_sweep("fig4", overrides={"steps": 7, "lr": 0.3}).runs
    assert {c.steps for c in runs} == {7} and {c.lr for c in runs} == {0.3}


def test_run_id_ignores_device_only():
    a = RunConfig(sweep="x", lr=0.1)
    assert a.run_id == RunConfig(sweep="x", lr=0.1, device="cpu").run_id
    assert a.run_id != RunConfig(sweep="y", lr=0.1).run_id


@pytest.mark.parametrize(
    "body,needle",
    [
        ("[base]\nlrr = 0.1\n", "unknown key 'lrr' (did you mean 'lr'?)"),
        ("[base]\nlr = -0.1\n", "lr = -0.1 is invalid: Input should be greater than 0"),
        ('[base]\ndataset = "foo"\n', "dataset = 'foo' is invalid"),
        ('[base]\ndataset = "mnist"\n', "missing"),
        ("[grid]\nwidht = [1, 2]\n", "unknown key 'widht' (did you mean 'width'?)"),
        ("[grid]\nlr = 0.1\n", "must be a non-empty list"),
        ('[base]\noptimizer = "sgd"\nmomentum = 0.9\n', "optimizer = 'sgd' has no momentum"),
        ("not toml [", "not valid TOML"),
    ],
)
def test_bad_sweep_files_exit_2_and_touch_nothing(tmp_path, body, needle):
    data = tmp_path / "data"
    rf = RunFolder(data, "old", "r1")
    rf.start()
    rf.write("steps", {"run_id": ["r1"], "step": [0]})
    rf.finish({"run_id": "r1", "sweep": "old", "status": "completed"})
    before = tree_bytes(data)
    names_before = sorted(p.name for p in data.rglob("*"))
    f = tmp_path / "bad.toml"
    f.write_text(body)
    res = run_cli("collect", "--sweep", f, "--data", data, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: bad.toml") and needle in lines[0]
    assert tree_bytes(data) == before and sorted(p.name for p in data.rglob("*")) == names_before


def test_bad_override_and_unknown_sweep(tmp_path):
    res = run_cli("collect", "--sweep", "demo", "--set", "lr=-1", "--data", tmp_path / "d")
    assert res.returncode == 2 and "lr = -1 is invalid" in res.stderr
    res = run_cli("collect", "--sweep", "dmeo", "--data", tmp_path / "d")
    assert res.returncode == 2 and "did you mean 'demo'" in res.stderr
    assert not (tmp_path / "d").exists()


def test_config_error_is_a_value_error():
    with pytest.raises(ConfigError, match="unknown sweep"):
        load_sweep("no_such_sweep")


def test_demo_is_the_demo_sweeps_at_their_demo_scale(tmp_path):
    from gclab.collect.sweep import expand
    from gclab.store.sweeps import DEMO_SWEEPS

    names, scale = expand(["demo"], "cpu")
    assert names == list(DEMO_SWEEPS) and scale == "demo"
    for name in DEMO_SWEEPS:
        demo, full = load_sweep(name, scale="demo"), load_sweep(name)
        assert {c.scale for c in demo.runs} == {"demo"} and len(demo.runs) < len(full.runs)
        assert not {c.run_id for c in demo.runs} & {c.run_id for c in full.runs}  # never the same runs
    res = run_cli("collect", "--sweep", "igr", "--scale", "demo", "--data", tmp_path / "d")  # igr has no [demo]
    assert res.returncode == 2 and "no [demo] section" in res.stderr and not (tmp_path / "d").exists()

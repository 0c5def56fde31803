"""The experiments registry (gclab/experiments.py): every entry resolves to real modules, sweep files,
planted knobs and Holm families, and a new entry is picked up by the claims and the report builder."""

from __future__ import annotations

import ast
import importlib
import sys
import types
from pathlib import Path

import pytest

from gclab import experiments
from gclab.analysis import claims
from gclab.analysis.deltas import DELTAS
from gclab.analysis.report import build
from gclab.analysis.report.common import Section
from gclab.analysis.result import Analysis, claims_frame, insufficient
from gclab.planted.store import EFFECTS
from gclab.store import sweeps as store_sweeps
from gclab.store.db import connect

ROOT = Path(__file__).resolve().parents[1]
SWEEP_FILES = ROOT / "gclab" / "collect" / "sweeps"
ENTRIES = {e.name: e for e in experiments.EXPERIMENTS}


def test_names_are_unique_and_each_sweep_belongs_to_one_experiment():
    assert len(ENTRIES) == len(experiments.EXPERIMENTS)
    owned = [s for e in experiments.EXPERIMENTS for s in e.sweeps]
    assert len(owned) == len(set(owned))


@pytest.mark.parametrize("name", list(ENTRIES))
def test_entry_resolves(name):
    entry = ENTRIES[name]
    for sweep in entry.sweeps:
        assert (SWEEP_FILES / f"{sweep}.toml").is_file(), f"{name}: no sweep file for {sweep}"
    for dotted in entry.analyses:
        assert callable(importlib.import_module(dotted).analyze)
    assert callable(importlib.import_module(entry.section).build)
    assert set(entry.planted) <= set(EFFECTS), f"{name}: planted knobs not in planted.store.EFFECTS"
    assert not entry.labels or len(entry.labels) == len(entry.sweeps)
    if entry.sweeps:
        assert entry.name == entry.sweeps[0]  # claim rows' `experiment` is the first sweep's name


def test_sweep_files_are_exactly_the_registry_sweeps():
    assert {p.stem for p in SWEEP_FILES.glob("*.toml")} == set(store_sweeps.SHIPPED_SWEEPS)
    # the CPU-scale `collect --paper` runs all but the [paper]-scale-only ones
    assert set(store_sweeps.PAPER_SWEEPS) == set(store_sweeps.SHIPPED_SWEEPS) - {"fig4_momentum"}


def test_families_match_deltas():
    """Each declared paper row (`<sweep>:<row>` in DELTAS) is in a family of the experiment owning that
    sweep, and each experiment's family is declared by at least one of its rows."""
    owner = {s: e for e in experiments.EXPERIMENTS for s in e.sweeps}
    used: dict[str, set[str]] = {}
    for key, spec in DELTAS.items():
        entry = owner[key.split(":")[0]]
        assert spec.family in entry.families, f"DELTAS[{key!r}] family {spec.family} not in {entry.name}'s"
        used.setdefault(entry.name, set()).add(spec.family)
    for entry in experiments.EXPERIMENTS:
        assert set(entry.families) == used.get(entry.name, set()), entry.name


def test_every_planted_knob_belongs_to_an_experiment_or_is_shared():
    claimed = {k for e in experiments.EXPERIMENTS for k in e.planted} | set(experiments.SHARED_EFFECTS)
    assert claimed == set(EFFECTS)


def test_derived_lists_follow_the_registry():
    assert store_sweeps.PAPER_SWEEPS == (
        "fig1",
        "fig2",
        "fig3",
        "fig4",
        "fig4_adam",
        "fig5",
        "gcreg",
        "thm51",
        "igr",
        "bfd",
    )
    assert store_sweeps.DEMO_SWEEPS == ("fig5", "thm51", "fig2", "fig4", "fig3", "fig1", "bfd", "gcreg")
    assert store_sweeps.FIG4_SWEEPS == {"fig4": "SGD", "fig4_momentum": "SGD+momentum", "fig4_adam": "Adam"}
    assert set(store_sweeps.INTERPOLATING_SWEEPS) == {"fig3", "fig4", "fig4_momentum", "fig4_adam", "gcreg", "igr"}
    assert set(store_sweeps.TREND_SWEEPS) == {"fig2", "fig3", "fig4", "fig4_momentum", "fig4_adam", "gcreg"}
    assert [m.__name__ for m in claims.MODULES.values()] == list(experiments.analysis_modules())
    assert build.SECTIONS[: len(build.FRONT_SECTIONS)] == build.FRONT_SECTIONS
    assert [build.PACKAGE + s for s in build.SECTIONS[len(build.FRONT_SECTIONS) :]] == list(
        experiments.section_modules()
    )


def test_registry_imports_only_the_standard_library():
    tree = ast.parse((ROOT / "gclab" / "experiments.py").read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}


def test_unknown_name_says_which_are_valid():
    with pytest.raises(KeyError, match="valid: fig1"):
        experiments.experiment("fig9")


@pytest.fixture
def fake_entry(monkeypatch):
    """A new experiment: one registry entry plus its own analysis and section modules."""
    analysis = types.ModuleType("fake_gclab.fake_analysis")
    source = "fake_gclab.fake_analysis"

    def analyze(con):
        row = insufficient(
            "the fake effect is there", "fake", "fake statistic", "no fake runs", kind="check", source=source
        )
        return Analysis("fake_gclab.fake_analysis", {}, claims_frame([row]))

    analysis.analyze = analyze
    section = types.ModuleType("fake_gclab.fake_section")
    section.build = lambda ctx: Section(
        id="fake", title="A fake experiment", question="Is it picked up?", claim_experiments=("fake",)
    )
    monkeypatch.setitem(sys.modules, "fake_gclab.fake_analysis", analysis)
    monkeypatch.setitem(sys.modules, "fake_gclab.fake_section", section)
    entry = experiments.Experiment(
        name="fake", sweeps=(), analyses=("fake_gclab.fake_analysis",), section="fake_gclab.fake_section"
    )
    monkeypatch.setattr(experiments, "EXPERIMENTS", (*experiments.EXPERIMENTS, entry))
    monkeypatch.setattr(claims, "MODULES", claims.load_modules())
    return entry


def test_a_new_entry_is_picked_up_by_claims_and_the_report(fake_entry, tmp_path):
    assert list(claims.MODULES)[-1] == "fake_analysis"
    assert build.section_names()[-1] == "fake_gclab.fake_section"
    with connect(tmp_path / "data", warn=False) as con:
        table = claims.claims_table(con)
    assert table.filter(table["experiment"] == "fake")["claim"].to_list() == ["the fake effect is there"]
    index = build.render(tmp_path / "data", tmp_path / "out", strict=True, figures=False, progress=False)
    doc = index.read_text(encoding="utf-8")
    assert "A fake experiment" in doc and "the fake effect is there" in doc

"""The metric engine's modules form an acyclic import graph, import alone in a fresh interpreter,
and never import another module's private names."""

import ast
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

PACKAGE = "gclab.collect.metrics"
ROOT = Path(__file__).resolve().parents[2] / "gclab" / "collect" / "metrics"
MODULES = sorted(p.stem for p in ROOT.glob("*.py"))


def _imports(name: str) -> tuple[set[str], list[str]]:
    """(engine modules `name` imports, anywhere in the file, lazily or not; private names it imports)."""
    tree = ast.parse((ROOT / f"{name}.py").read_text())
    edges, private = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            edges |= {a.name.removeprefix(f"{PACKAGE}.") for a in node.names if a.name.startswith(PACKAGE)}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gclab"):
            private += [f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
            if node.module == PACKAGE:  # `from package import x`: a submodule, else the package's __init__
                edges |= {a.name if a.name in MODULES else "__init__" for a in node.names}
            elif node.module.startswith(f"{PACKAGE}."):
                edges.add(node.module.removeprefix(f"{PACKAGE}."))
    return edges - {name}, private


def test_graph_is_read_from_the_sources():
    # The parser sees the known edges, so an empty graph cannot pass the cycle check by accident.
    assert {"chain", "tape", "signals"} <= _imports("capture")[0]
    assert "signals" in _imports("chain")[0] and "chain" in _imports("theorem")[0]
    assert {"capture", "step", "theorem", "gc"} <= _imports("__init__")[0]


def test_no_import_cycle():
    graph = {name: _imports(name)[0] for name in MODULES}
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        pytest.fail(f"import cycle in gclab/collect/metrics: {' -> '.join(exc.args[1])}")
    assert set(order) == set(MODULES)
    # The leaf the pass implementations share imports none of them.
    assert not graph["signals"] & {"capture", "chain", "tape"}


def test_no_private_names_imported():
    found = {name: _imports(name)[1] for name in MODULES}
    assert not any(found.values()), {k: v for k, v in found.items() if v}


@pytest.mark.parametrize("name", MODULES)
def test_each_module_imports_alone(name):
    module = PACKAGE if name == "__init__" else f"{PACKAGE}.{name}"
    done = subprocess.run(
        [sys.executable, "-c", f"import importlib; importlib.import_module({module!r})"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr.strip().splitlines()[-1:]

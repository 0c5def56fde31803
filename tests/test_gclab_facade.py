"""The one import name: `import gclab` stays light (no torch); the stub gclab/__init__.pyi that editors
read lists exactly the names served at run time, each resolving to the object its stub line imports
(its engine names are the engine's public names)."""

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import gclab
from gclab.collect import metrics

STUB = Path(gclab.__file__).with_suffix(".pyi")


def _stub_imports() -> dict[str, str]:
    """name → the module its stub line imports it from (absolute), from the stub's AST."""
    tree = ast.parse(STUB.read_text())
    homes = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            assert node.level == 1, f"stub line {node.lineno}: lazy_loader reads only `from .x import y`"
            for alias in node.names:
                # `X as X` is the re-export editors honour; a rename would serve a different name at run time
                assert alias.asname == alias.name, f"stub line {node.lineno}: write `{alias.name} as {alias.name}`"
                homes[alias.name] = "gclab" + ("." + node.module if node.module else "")
    return homes


def test_import_gclab_and_its_read_side_load_no_torch():
    code = "import sys, gclab; gclab.query; gclab.claims; gclab.render_report; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "False"


def test_stub_lists_exactly_the_names_served():
    # the stub's re-exports are what editors complete and what lazy_loader serves
    assert sorted(_stub_imports()) == sorted(gclab.__all__)
    assert sorted(dir(gclab)) == sorted(gclab.__all__)


@pytest.mark.parametrize("name", gclab.__all__)
def test_every_listed_name_is_what_its_stub_line_imports(name):
    home = _stub_imports()[name]
    module = importlib.import_module(home)
    expected = getattr(module, name) if hasattr(module, name) else importlib.import_module(f"{home}.{name}")
    assert getattr(gclab, name) is expected


def test_an_unlisted_name_raises_attribute_error():
    with pytest.raises(AttributeError):
        gclab.not_a_gclab_name  # noqa: B018


@pytest.mark.parametrize("name", [n for n, home in _stub_imports().items() if home == "gclab.collect.metrics"])
def test_engine_names_are_the_engines_public_names(name):
    assert name in metrics.__all__
    assert getattr(gclab, name) is getattr(metrics, name)

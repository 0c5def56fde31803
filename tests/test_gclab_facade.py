"""The one import name: `import gclab` stays light (no torch), and every name it lists resolves to
the object its home module defines (its engine names are the engine's public names)."""

import subprocess
import sys

import pytest

import gclab
from gclab.collect import metrics


def test_import_gclab_and_its_read_side_load_no_torch():
    code = "import sys, gclab; gclab.query; gclab.claims; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("name", gclab.__all__)
def test_every_listed_name_resolves(name):
    assert getattr(gclab, name) is not None


@pytest.mark.parametrize("name", gclab._METRICS)
def test_engine_names_are_the_engines_public_names(name):
    assert name in metrics.__all__
    assert getattr(gclab, name) is getattr(metrics, name)

"""Fixtures of the analysis tests; the planted-store helpers live in tests/_helpers/planted.py."""

import pytest

from gclab.planted.calibrate import CADENCE
from gclab.planted.store import write_planted_store


@pytest.fixture(scope="session")
def default_store(tmp_path_factory):
    """Every paper sweep with the paper's effects planted, the sweeps' own seeds, on disk."""
    path = tmp_path_factory.mktemp("default")
    write_planted_store(path, cadence=CADENCE)
    return path

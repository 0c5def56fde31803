"""Fixtures of the analysis tests; the planted-store helpers live in tests/_helpers/planted.py."""

import pytest

from gclab.planted.calibrate import CADENCE
from gclab.planted.store import write_planted_store
from gclab.store.sweeps import FIG4_SWEEPS, PAPER_SWEEPS
from tests._helpers.planted import pinned


@pytest.fixture(scope="session")
def default_store(tmp_path_factory):
    """Every paper sweep with the paper's effects planted, the sweeps' own seeds, on disk."""
    path = tmp_path_factory.mktemp("default")
    # fig4_momentum is [paper]-scale only (not in PAPER_SWEEPS) but still a catalog sweep with claims rows
    sweeps = tuple(dict.fromkeys([*PAPER_SWEEPS, *FIG4_SWEEPS]))
    write_planted_store(path, sweeps=sweeps, cadence=CADENCE, effects=pinned(None))
    return path

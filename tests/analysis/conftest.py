"""Fixtures of the analysis tests; the planted-store helpers live in tests/_helpers/planted.py."""

import pytest

from gclab.planted.calibrate import CADENCE
from gclab.planted.store import sweep_runs, write_planted_store
from gclab.store.sweeps import FIG4_SWEEPS, PAPER_SWEEPS
from tests._helpers.planted import pinned


@pytest.fixture(scope="session")
def default_store(tmp_path_factory):
    """Every paper sweep with the paper's effects planted, on disk: the sweeps' own seeds, at most 4 in a sweep
    of over 30 runs (the seeds bought for power at δ, 8–24, would triple the store and the tests reading it)."""
    path = tmp_path_factory.mktemp("default")
    # fig4_momentum is [paper]-scale only (not in PAPER_SWEEPS) but still a catalog sweep with claims rows
    sweeps = tuple(dict.fromkeys([*PAPER_SWEEPS, *FIG4_SWEEPS]))
    few = tuple(s for s in sweeps if len(sweep_runs(s)) > 30 and len({r.seed for r in sweep_runs(s)}) > 4)
    for group, seeds in ((few, 4), (tuple(s for s in sweeps if s not in few), None)):
        write_planted_store(path, sweeps=group, seeds=seeds, cadence=CADENCE, effects=pinned(None))
    return path

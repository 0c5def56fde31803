"""The report overview's list of what is not collected, on real stores: an experiment that reads another's
runs (igr reads fig4's lr × batch grid, `gclab.experiments` `reads`) is not "missing" when those runs are there."""

from __future__ import annotations

from gclab.analysis import igr
from gclab.analysis.report import overview
from gclab.analysis.report.common import Context
from gclab.experiments import EXPERIMENTS, reads
from gclab.planted.store import write_planted_store
from gclab.store.db import connect
from gclab.store.sweeps import PAPER_SWEEPS

CADENCE = {"steps": 20, "log_every": 10, "eval_every": 10}


def _caveats(data_dir) -> str:
    con = connect(data_dir, warn=False)
    try:
        return " ".join(overview.build(Context(con, data_dir)).caveats)
    finally:
        con.close()


def test_igr_reads_the_grid_the_registry_declares():
    assert igr.SWEEPS == reads("igr") and set(reads("igr")) == {"fig4", "igr"}
    assert reads("fig5") == ("fig5",)  # an entry without `reads` reads its own sweeps


def test_fig4_runs_answer_igr_so_it_is_not_missing(tmp_path):
    write_planted_store(tmp_path, sweeps=("fig4",), seeds=2, cadence=CADENCE)
    text = _caveats(tmp_path)
    missing = text.partition("Experiments with no completed runs to read:")[2].partition("—")[0]
    assert "igr" not in missing and "fig4" not in missing and "fig5" in missing
    assert "igr (no `igr`)" in text  # collected in part: its own corners are not there


def test_every_uncollected_paper_sweep_is_named_once(tmp_path):
    write_planted_store(tmp_path, sweeps=("fig5",), seeds=2, cadence=CADENCE)
    missing, partial = overview.collect_gaps(lambda s: s == "fig5")
    named = {s for e in EXPERIMENTS if e.name in missing for s in reads(e.name)} | {
        s for p in partial for s in PAPER_SWEEPS if f"`{s}`" in p
    }
    assert named >= set(PAPER_SWEEPS) - {"fig5"} and "fig5" not in missing
    assert "Experiments with no completed runs to read: fig1, fig2, fig3" in _caveats(tmp_path)

"""Report sections above and below the row budget (`analysis.curves.ROW_BUDGET`), on the planted store
with every paper sweep: above it a chart draws per-config aggregates, inlines no run and says so;
below it every run is drawn and a tooltip config table holds only the runs drawn."""

from __future__ import annotations

import altair as alt
import numpy as np
import polars as pl
import pytest

from gclab.analysis import curves
from gclab.analysis.report.budget import spread
from gclab.analysis.report.build import MAX_ROWS, _build_section
from gclab.analysis.report.common import Context
from gclab.store.db import connect

AGGREGATED = "per-config mean and 10–90% band of the runs instead of dots; the points are in the store"
# Section → {figure drawn one mark per run below the budget: the (analysis, table) of those runs}.
PER_RUN = {
    "demo": {"demo_test_loss": ("training_curves", "test_loss")},
    "fig2": {"fig2_gc_depth": ("trends", "fig2_gc_runs")},
    "fig3": {"fig3_regularizers": ("trends", "fig3_runs")},
    "fig4": {"fig4_lr": ("trends", "fig4_lr_runs"), "fig4_batch": ("trends", "fig4_batch_size_runs")},
    "fig5": {"fig5_width": ("ucurve", "points"), "fig5_ucurve": ("ucurve", "points")},
}
# Analysis tables a chart draws whatever the number of runs (a fitted curve on a fixed grid).
FIXED = {"fig5_ucurve": ("ucurve", "poly6")}


@pytest.fixture(scope="module")
def ctx(default_store):
    con = connect(default_store, warn=False)
    yield Context(con, default_store)
    con.close()


def _figures(ctx, name: str) -> dict:
    with alt.data_transformers.enable("gclab_rounded", max_rows=MAX_ROWS):
        sec = _build_section(name, ctx, strict=True)
    return {f.name: f for f in sec.figures}


def _datasets(spec: dict) -> list[list[dict]]:
    return list(spec.get("datasets", {}).values())


def _run_ids(spec: dict) -> set[str]:
    return {row["run_id"] for rows in _datasets(spec) for row in rows if "run_id" in row}


@pytest.mark.parametrize("name", sorted(PER_RUN))
def test_below_the_budget_every_run_is_drawn_with_its_config_only(ctx, name):
    figs = _figures(ctx, name)
    for fig_name, (module, key) in PER_RUN[name].items():
        table = ctx.table(module, key)
        assert 0 < table.height <= curves.ROW_BUDGET, "the planted store should be below the budget"
        fig = figs[fig_name]
        assert AGGREGATED not in fig.caption
        # every run of the table is drawn, and no config row of a run the chart does not draw is inlined
        assert _run_ids(fig.spec) == set(table["run_id"].to_list())


@pytest.mark.parametrize("name", sorted(PER_RUN))
def test_above_the_budget_a_chart_draws_aggregates_and_says_so(ctx, name, monkeypatch):
    smallest = min(ctx.table(m, k).height for m, k in PER_RUN[name].values())
    budget = smallest - 1
    monkeypatch.setattr(curves, "ROW_BUDGET", budget)
    figs = _figures(ctx, name)
    for fig_name in PER_RUN[name]:
        fig = figs[fig_name]
        assert AGGREGATED in fig.caption, fig.caption
        fixed = ctx.table(*FIXED[fig_name]).height if fig_name in FIXED else 0
        sizes = [len(rows) for rows in _datasets(fig.spec) if len(rows) != fixed]
        assert sizes and max(sizes) <= budget, (fig_name, sizes, budget)
        assert not _run_ids(fig.spec), f"{fig_name} still inlines single runs"


def test_theorem_sample_and_its_config_stay_within_the_budget(ctx, monkeypatch):
    sample = ctx.table("theorem", "last_eval_sample")
    below = _figures(ctx, "theorem")["theorem_bound"]
    assert _run_ids(below.spec) == set(sample["run_id"].to_list())
    budget = sample.height - 1
    monkeypatch.setattr(curves, "ROW_BUDGET", budget)
    fig = _figures(ctx, "theorem")["theorem_bound"]
    assert f"a random sample of {budget}" in fig.caption
    assert max(len(rows) for rows in _datasets(fig.spec)) <= budget
    assert _run_ids(fig.spec) <= set(sample.head(budget)["run_id"].to_list())


def test_spread_is_the_quantiles_of_each_group():
    rng = np.random.default_rng(0)
    df = pl.DataFrame({"g": rng.integers(0, 3, 300), "v": rng.lognormal(size=300)})
    band = spread(df, ["g"], ["v"])
    for row in band.iter_rows(named=True):
        values = df.filter(pl.col("g") == row["g"])["v"].to_numpy()
        assert row["n"] == len(values)
        assert row["v_q10"] == pytest.approx(np.quantile(values, 0.1))
        assert row["v_q90"] == pytest.approx(np.quantile(values, 0.9))


def test_chart_spec_keeps_every_row_and_still_validates_the_chart():
    from altair.utils.schemapi import debug_mode

    from gclab.analysis.report.build import VALIDATED_ROWS, chart_spec

    df = pl.DataFrame({"a": np.arange(VALIDATED_ROWS + 50, dtype=float)})
    with alt.data_transformers.enable("gclab_rounded", max_rows=MAX_ROWS):
        spec = chart_spec(alt.Chart(df).mark_point().encode(x="a:Q"))
        assert [len(rows) for rows in _datasets(spec)] == [df.height]
        with debug_mode(False):  # built without Altair's checks: chart_spec is the one left
            bad = alt.Chart(df).mark_point().encode(x=alt.X("a:Q", title=3))
        with pytest.raises(Exception, match="title"):
            chart_spec(bad)

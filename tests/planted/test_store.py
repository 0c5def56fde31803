"""Planted stores: built from the shipped sweep files through RunConfig, written by the real writer."""

import json

import pytest
from polars.testing import assert_frame_equal

from gclab.collect.sweep import MAX_RUNS, ConfigError, load_sweep
from gclab.planted.calibrate import CADENCE
from gclab.planted.store import planted_connection, sweep_runs, write_planted_store
from gclab.store.db import connect
from gclab.store.sweeps import PAPER_SWEEPS


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    path = tmp_path_factory.mktemp("planted")
    write_planted_store(path, cadence=CADENCE)
    return connect(path, warn=False)


def one(con, sql):
    return con.sql(sql).fetchall()[0]


def test_runs_are_exactly_the_shipped_sweeps_grids(con):
    """Same configurations (every RunConfig field but the shortened cadence), seeds and names."""
    for sweep in PAPER_SWEEPS:
        shipped = load_sweep(sweep).runs
        stored = con.sql(f"SELECT config_json FROM runs WHERE sweep = '{sweep}'").fetchall()
        assert len(stored) == len(shipped), sweep
        got = sorted(
            json.dumps({k: v for k, v in json.loads(r[0]).items() if k not in CADENCE}, sort_keys=True) for r in stored
        )
        want = sorted(
            json.dumps({k: v for k, v in c.model_dump(mode="json").items() if k not in CADENCE}, sort_keys=True)
            for c in shipped
        )
        assert got == want, sweep
    fig2 = load_sweep("fig2").runs
    inits = {r[0] for r in con.sql("SELECT DISTINCT init FROM runs WHERE sweep = 'fig2'").fetchall()}
    assert inits == {r.init for r in fig2}
    assert {r[0] for r in con.sql("SELECT DISTINCT dataset FROM runs WHERE sweep = 'fig2'").fetchall()} == {
        r.dataset for r in fig2
    }


def test_every_sweep_writes_runs_steps_and_evals(con):
    sweeps = {r[0] for r in con.sql("SELECT DISTINCT sweep FROM runs").fetchall()}
    assert sweeps == set(PAPER_SWEEPS)
    assert one(con, "SELECT count(*) FROM runs WHERE status = 'diverged'")[0] == 1
    assert (
        one(con, "SELECT count(*) FROM runs r WHERE NOT EXISTS (SELECT 1 FROM steps s WHERE s.run_id = r.run_id)")[0]
        == 0
    )
    # Every eval step has the three splits.
    assert one(con, "SELECT count(*) FROM (SELECT run_id, step FROM evals GROUP BY ALL HAVING count(*) <> 3)")[0] == 0
    key = [
        "seed",
        "dataset",
        "model",
        "width",
        "depth",
        "lr",
        "batch_size",
        "steps",
        "n_params",
        "config_json",
        "n_train",
        "n_test",
    ]
    assert one(con, f"SELECT count(*) FROM runs WHERE {' OR '.join(f'{c} IS NULL' for c in key)}")[0] == 0


def test_steps_satisfy_eq6_and_theorem_rows_are_consistent(con):
    rel = one(
        con,
        "SELECT max(abs(grad_norm_sq - residual_term - label_alignment - batch_alignment) "
        "/ abs(grad_norm_sq)) FROM steps",
    )[0]
    assert rel < 1e-12
    bad = one(
        con, "SELECT count(*) FROM theorem WHERE NOT (bound >= bound_tight AND bound_tight >= gc_x AND holds_tight)"
    )
    assert bad[0] == 0
    # Theorem rows where the sweep asks for them (theorem_examples > 0), as collection writes them.
    sweeps = {r[0] for r in con.sql("SELECT DISTINCT r.sweep FROM theorem t JOIN runs r USING (run_id)").fetchall()}
    assert sweeps == {s for s in PAPER_SWEEPS if any(r.theorem_examples for r in sweep_runs(s))}
    err = one(
        con,
        "SELECT max(abs(l.s - t.transfer_sq_sum) / t.transfer_sq_sum) FROM theorem t JOIN "
        "(SELECT run_id, step, split, example, sum(transfer_sq) AS s FROM layers GROUP BY ALL) l "
        "USING (run_id, step, split, example)",
    )[0]
    assert err < 1e-12
    probes = {r[0] for r in con.sql("SELECT DISTINCT r.sweep FROM probes p JOIN runs r USING (run_id)").fetchall()}
    assert probes == {s for s in PAPER_SWEEPS if any(r.probe_points for r in sweep_runs(s))}


def test_memory_store_equals_the_parquet_store(con):
    mem = planted_connection(cadence=CADENCE)
    for table in ("runs", "evals", "steps", "theorem", "probes"):
        q = f"SELECT * EXCLUDE (sweep) FROM {table} ORDER BY ALL"
        assert_frame_equal(mem.sql(q).pl(), con.sql(q).pl())


def test_n_runs_and_runs_scale(tmp_path):
    write_planted_store(tmp_path / "a", sweeps=["gcreg", "igr"], n_runs=25, cadence=CADENCE)
    write_planted_store(tmp_path / "b", sweeps=["gcreg"], seeds=2, runs_scale=3, cadence=CADENCE)
    a, b = connect(tmp_path / "a", warn=False), connect(tmp_path / "b", warn=False)
    assert one(a, "SELECT count(*), count(DISTINCT sweep) FROM runs") == (25, 2)
    n_cfg = len(sweep_runs("gcreg", seeds=1))
    assert one(b, "SELECT count(*), count(DISTINCT seed) FROM runs") == (6 * n_cfg, 6)


def test_unknown_effect_is_a_clear_error(tmp_path):
    with pytest.raises(KeyError, match="unknown planted effects"):
        write_planted_store(tmp_path, effects={"no_such_effect": 1})
    assert not (tmp_path / "runs").exists()


def test_a_paper_scale_only_sweep_is_planted_with_that_scales_seeds():
    """fig4_momentum is collected at [paper] scale only, so its planted runs carry those seeds (what a real
    store of it holds), on its CPU grid; other sweeps keep their CPU seeds."""
    from gclab.store.sweeps import PAPER_SCALE_ONLY

    assert "fig4_momentum" in PAPER_SCALE_ONLY
    for sweep in ("fig4_momentum", "fig4_adam"):
        scale = "paper" if sweep in PAPER_SCALE_ONLY else "cpu"
        want = {r.seed for r in load_sweep(sweep, scale=scale).runs}
        runs = sweep_runs(sweep, cadence=CADENCE)
        assert {r.seed for r in runs} == want
        assert {(r.lr, r.batch_size) for r in runs} == {(r.lr, r.batch_size) for r in load_sweep(sweep).runs}


def test_planted_sweeps_may_exceed_the_training_guard():
    """Planting trains nothing, so a planted sweep may hold more than MAX_RUNS runs (the store bench's 10⁵)."""
    per_seed = len(sweep_runs("fig2", seeds=1))
    seeds = MAX_RUNS // per_seed + 1
    with pytest.raises(ConfigError, match="allow-huge"):
        load_sweep("fig2", scale="cpu", overrides={"seeds": list(range(seeds))})
    runs = sweep_runs("fig2", seeds=seeds)
    assert len(runs) == per_seed * seeds > MAX_RUNS
    assert len({r.run_id for r in runs}) == len(runs)

import pytest

from store.db import connect
from store.synthetic import write_synthetic_store

SMALL = dict(n_steps=20, log_every=10, eval_every=10)


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    path = tmp_path_factory.mktemp("syn")
    write_synthetic_store(path, **SMALL)
    return connect(path, warn=False)


def one(con, sql):
    return con.sql(sql).fetchall()[0]


def test_every_sweep_writes_runs_steps_and_evals(con):
    sweeps = {r[0] for r in con.sql("SELECT DISTINCT sweep FROM runs").fetchall()}
    assert sweeps == {"fig1", "fig2", "fig3", "fig4", "fig5", "gcreg", "thm51", "igr", "bfd"}
    assert one(con, "SELECT count(*) FROM runs WHERE status = 'diverged'")[0] > 0
    assert one(con, "SELECT count(*) FROM runs r WHERE NOT EXISTS (SELECT 1 FROM steps s WHERE s.run_id = r.run_id)"
               )[0] == 0
    # Every eval step has the three splits.
    assert one(con, "SELECT count(*) FROM (SELECT run_id, step FROM evals GROUP BY ALL HAVING count(*) <> 3)")[0] == 0
    key = ["seed", "dataset", "model", "width", "depth", "lr", "batch_size", "steps", "n_params", "config_json"]
    assert one(con, f"SELECT count(*) FROM runs WHERE {' OR '.join(f'{c} IS NULL' for c in key)}")[0] == 0


def test_steps_satisfy_eq6_and_theorem_rows_are_consistent(con):
    rel = one(con, "SELECT max(abs(grad_norm_sq - residual_term - label_alignment - batch_alignment) "
                   "/ abs(grad_norm_sq)) FROM steps")[0]
    assert rel < 1e-12
    bad = one(con, "SELECT count(*) FROM theorem WHERE NOT (bound >= bound_tight AND bound_tight >= gc_x AND holds)")
    assert bad[0] == 0
    sweeps = con.sql("SELECT DISTINCT r.sweep FROM theorem t JOIN runs r USING (run_id)").fetchall()
    assert {r[0] for r in sweeps} == {"thm51"}
    # Σ_l T_l² in layers equals transfer_sq_sum in theorem.
    err = one(con, "SELECT max(abs(l.s - t.transfer_sq_sum) / t.transfer_sq_sum) FROM theorem t JOIN "
                   "(SELECT run_id, step, split, example, sum(transfer_sq) AS s FROM layers GROUP BY ALL) l "
                   "USING (run_id, step, split, example)")[0]
    assert err < 1e-12
    probes = {r[0] for r in con.sql("SELECT DISTINCT r.sweep FROM probes p JOIN runs r USING (run_id)").fetchall()}
    assert probes == {"fig1", "fig2"}


def test_n_runs_and_runs_scale(tmp_path):
    write_synthetic_store(tmp_path / "a", sweeps=["gcreg", "igr"], n_runs=25, **SMALL)
    write_synthetic_store(tmp_path / "b", sweeps=["gcreg"], seeds=2, runs_scale=3, **SMALL)
    a, b = connect(tmp_path / "a", warn=False), connect(tmp_path / "b", warn=False)
    assert one(a, "SELECT count(*), count(DISTINCT sweep) FROM runs") == (25, 2)
    assert one(b, "SELECT count(*), count(DISTINCT seed) FROM runs") == (36, 6)


def test_unknown_effect_is_a_clear_error(tmp_path):
    with pytest.raises(KeyError, match="unknown synthetic effects"):
        write_synthetic_store(tmp_path, effects={"no_such_effect": 1})

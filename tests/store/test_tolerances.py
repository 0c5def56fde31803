"""The Theorem 5.1 criterion: the DuckDB predicate the analysis counts with says what the engine's
Python function says, row for row, at the edges of each dtype's tolerance and on NaN/inf."""

import duckdb
import numpy as np
import pytest

from gclab.store.tolerances import THEOREM_RTOL, theorem_holds, theorem_holds_sql, theorem_rtol


def test_the_tolerance_edge_per_dtype():
    for dtype, rtol in THEOREM_RTOL.items():
        bound = np.array([2.0, 2.0])
        assert theorem_holds(bound * np.array([1 + rtol / 2, 1 + 2 * rtol]), bound, dtype).tolist() == [True, False]
    assert theorem_rtol("torch.float64") == 1e-9 and theorem_rtol("bfloat16") == theorem_rtol("float32") == 1e-4


@pytest.mark.parametrize("dtype", ["float32", "float64", None])
def test_sql_predicate_agrees_with_the_python_function(dtype):
    rtol = theorem_rtol(dtype or "float32")
    bound = np.array([1.0, 1.0, 1.0, 1.0, 0.0, 0.0, np.inf, 5.0, np.nan, 3.0, 1e300])
    gc_x = np.array([1.0, 1 + rtol / 3, 1 + 3 * rtol, 0.5, 0.0, 1e-300, 1e9, np.inf, 1.0, np.nan, 1e300])
    want = theorem_holds(gc_x, bound, dtype or "float32")
    con = duckdb.connect()
    con.execute("CREATE TABLE t (i INTEGER, gc_x DOUBLE, bound DOUBLE, dtype VARCHAR)")
    con.executemany(
        "INSERT INTO t VALUES (?, ?, ?, ?)",
        [(i, float(g), float(b), dtype) for i, (g, b) in enumerate(zip(gc_x, bound))],
    )
    assert con.sql("SELECT count(*) FROM t WHERE isnan(gc_x) OR isnan(bound)").fetchall() == [(2,)]  # NaN, not NULL
    got = [r[0] for r in con.sql(f"SELECT {theorem_holds_sql('gc_x', 'bound', 'dtype')} FROM t ORDER BY i").fetchall()]
    assert got == want.tolist()
    assert want.tolist() == [True, True, False, True, True, False, True, False, False, False, True]

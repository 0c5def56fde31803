import json
import subprocess
import sys
from pathlib import Path

import polars as pl

from analysis.claims import claims_table, run_all
from analysis.result import CLAIM_COLUMNS, CLAIM_SCHEMA, VERDICTS
from store.db import connect
from store.synthetic import write_synthetic_store
from tests.analysis.conftest import SMALL

ROOT = Path(__file__).resolve().parents[2]
VENV_PY = ROOT / ".venv" / "bin" / "python"
SEEDED = ["fig1", "fig2", "fig3", "fig4", "gcreg", "fig5", "bfd"]  # claims that need ≥ 2 seeds


def test_empty_store_gives_insufficient_data_everywhere(tmp_path):
    with connect(tmp_path / "data", warn=False) as con:
        table = claims_table(con)
    assert table.columns == CLAIM_COLUMNS and dict(table.schema) == CLAIM_SCHEMA
    assert table.height >= 25 and set(table["verdict"]) == {"insufficient data"}
    assert not table["statistic"].str.contains("analysis failed").any()


def test_single_seed_store_gives_insufficient_data_where_seeds_are_needed(tmp_path):
    write_synthetic_store(tmp_path, seeds=1, **SMALL)
    with connect(tmp_path, warn=False) as con:
        table = claims_table(con)
    seeded = table.filter(pl.col("experiment").is_in(SEEDED) | pl.col("claim").str.contains("h/b"))
    assert seeded.height > 15 and set(seeded["verdict"]) == {"insufficient data"}
    assert not table["statistic"].str.contains("analysis failed").any()


def test_planted_store_supports_every_collected_claim(default_store):
    with connect(default_store, warn=False) as con:
        results = run_all(con)
        table = claims_table(con)
        # The snapshot's temporary tables are gone afterwards: the views answer again.
        assert con.sql("SELECT count(*) FROM duckdb_tables() WHERE temporary").fetchall()[0][0] == 0
    assert set(results) == {"fig1", "trends", "double_descent", "ucurve", "theorem", "igr", "bfd", "measures"}
    collected = table.filter(~pl.col("experiment").is_in(["fig4_momentum", "fig4_adam"]))
    assert set(collected["verdict"]) == {"supported"}, collected.filter(pl.col("verdict") != "supported")
    assert set(table["verdict"]) <= set(VERDICTS)


def test_cli_prints_a_json_list_of_claims(default_store):
    python = str(VENV_PY if VENV_PY.exists() else sys.executable)
    proc = subprocess.run([python, "-m", "analysis", "claims", "--data", str(default_store), "--json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert isinstance(rows, list) and len(rows) >= 25
    assert all(list(r) == CLAIM_COLUMNS for r in rows)
    assert {r["verdict"] for r in rows} <= set(VERDICTS)
    assert all(isinstance(r["n_runs"], int) for r in rows)

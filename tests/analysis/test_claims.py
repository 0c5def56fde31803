import json
import subprocess
import sys
from pathlib import Path

import polars as pl

from gclab.analysis import igr
from gclab.analysis.claims import by_kind, claims_table, run_all, summary
from gclab.analysis.deltas import DELTAS
from gclab.analysis.result import CLAIM_COLUMNS, CLAIM_SCHEMA, KINDS, VERDICTS
from gclab.analysis.verdict import holm
from gclab.planted.calibrate import CADENCE
from gclab.planted.store import write_planted_store
from gclab.store.db import connect

ROOT = Path(__file__).resolve().parents[2]
VENV_PY = ROOT / ".venv" / "bin" / "python"
SEEDED = ["fig1", "fig2", "fig3", "fig4", "gcreg", "fig5", "bfd"]  # claims that need ≥ 2 seeds


def test_empty_store_gives_insufficient_data_everywhere(tmp_path):
    with connect(tmp_path / "data", warn=False) as con:
        table = claims_table(con)
    assert table.columns == CLAIM_COLUMNS and dict(table.schema) == CLAIM_SCHEMA
    assert table.height >= 25 and set(table["verdict"]) == {"insufficient data"}
    assert summary(table) == "38 paper claims: 38 insufficient data"
    assert not table["statistic"].str.contains("analysis failed").any()


def test_single_seed_store_gives_insufficient_data_where_seeds_are_needed(tmp_path):
    write_planted_store(tmp_path, seeds=1, cadence=CADENCE)
    with connect(tmp_path, warn=False) as con:
        table = claims_table(con)
    seeded = table.filter(
        (pl.col("experiment").is_in(SEEDED) | pl.col("claim").str.contains("h/b")) & (pl.col("kind") != "check")
    )  # the bfd plateau check needs no seeds
    assert seeded.height > 15 and set(seeded["verdict"]) == {"insufficient data"}
    assert not table["statistic"].str.contains("analysis failed").any()


def test_planted_store_supports_every_collected_claim(default_store):
    with connect(default_store, warn=False) as con:
        results = run_all(con)
        table = claims_table(con)
        # The snapshot's temporary tables are gone afterwards: the views answer again.
        assert con.sql("SELECT count(*) FROM duckdb_tables() WHERE temporary").fetchall()[0][0] == 0
    assert set(results) == {"fig1", "trends", "double_descent", "ucurve", "theorem", "igr", "bfd", "measures"}
    # "only h/b matters" is a no-effect condition: it can only be contradicted or inconclusive. Here fig4's
    # planted trends (even steps along each grid, not along log h/b) break it: the shipped seeds see that.
    rest = table.filter(pl.col("claim") != igr.RATIO_CLAIM)
    assert set(rest["verdict"]) == {"supported"}, rest.filter(pl.col("verdict") != "supported")
    assert table.filter(pl.col("claim") == igr.RATIO_CLAIM)["verdict"].to_list() == ["contradicted"]
    paper = table.filter(pl.col("kind") == "paper")
    # Every paper row carries its declared Holm family and δ (analysis.deltas); the other kinds none.
    assert paper["family"].is_not_null().all() and paper["delta"].is_not_null().all()
    assert set(paper["family"]) <= {s.family for s in DELTAS.values()}
    assert table.filter(pl.col("kind") != "paper")["family"].is_null().all()
    assert paper.height == 52 and paper["p_adjusted"].is_not_null().sum() == paper["p_value"].is_not_null().sum()
    assert (paper.drop_nulls("p_value").select(pl.col("p_adjusted") >= pl.col("p_value")).to_series()).all()
    assert table.filter(pl.col("kind") != "paper")["p_adjusted"].is_null().all()
    kinds = dict(zip(table["claim"], table["kind"]))
    assert kinds[next(c for c in kinds if "shrinks slower" in c)] == "condition"
    assert kinds[next(c for c in kinds if "Eq. 6" in c)] == "check"
    assert kinds[next(c for c in kinds if "Theorem 5.1" in c)] == "check"
    assert kinds[next(c for c in kinds if "interpolation threshold" in c)] == "literature"
    assert kinds[next(c for c in kinds if "generalization gap" in c)] == "toolkit"
    assert summary(table) == "52 paper claims: 52 supported"
    assert by_kind(table)["kind"].to_list() == sorted(table["kind"], key=KINDS.index)


def test_holm_runs_within_each_family_and_demotes_only_paper_rows():
    from statsmodels.stats.multitest import multipletests

    p = [0.001, 0.02, 0.04, 0.03, 0.5]
    family = ["gc:fig4", "gc:fig4", "gc:fig4", "gc:fig5", "gc:fig5"]
    rows = pl.DataFrame(
        {
            "claim": list("abcde") + ["f"],
            "kind": ["paper"] * 5 + ["condition"],
            "family": family + [None],
            "p_value": p + [0.04],
            "statistic": ["s"] * 6,
            "verdict": ["supported", "supported", "contradicted", "supported", "inconclusive", "supported"],
            "p_adjusted": [None] * 6,
        },
        schema_overrides={"p_adjusted": pl.Float64, "family": pl.String},
    )
    out = holm(rows)
    fig4, fig5 = multipletests(p[:3], method="holm")[1], multipletests(p[3:], method="holm")[1]
    # By hand: fig4 sorted 0.001, 0.02, 0.04 × 3, 2, 1 with running max → 0.003, 0.04, 0.04;
    # fig5 0.03, 0.5 × 2, 1 → 0.06, 0.5. Over all five rows at once b would be 0.08 (demoted).
    assert list(fig4) == [0.003, 0.04, 0.04] and list(fig5) == [0.06, 0.5]
    assert out["p_adjusted"].to_list()[:5] == [*fig4, *fig5]
    assert out["verdict"].to_list() == [
        "supported",
        "supported",
        "contradicted",
        "inconclusive",
        "inconclusive",
        "supported",
    ]
    assert out["p_adjusted"][5] is None and "Holm" in out["statistic"][3] and "Holm" not in out["statistic"][1]


def test_paper_rows_need_a_family_and_a_positive_delta():
    import pytest

    from gclab.analysis.result import claim

    with pytest.raises(ValueError, match="family"):
        claim("c", "fig4", "s", "supported", kind="paper", source="x")
    with pytest.raises(ValueError, match="delta"):
        claim("c", "fig4", "s", "supported", kind="paper", source="x", family="gc:fig4", delta=0.0)
    row = claim("c", "fig4", "s", "absent", kind="paper", source="x", family="gc:fig4", delta=0.1, seeds_needed=7)
    assert (row["family"], row["delta"], row["reference"], row["seeds_needed"]) == ("gc:fig4", 0.1, 0.0, 7)


def test_cli_prints_a_json_list_of_claims(default_store):
    python = str(VENV_PY if VENV_PY.exists() else sys.executable)
    proc = subprocess.run(
        [python, "-m", "gclab", "claims", "--data", str(default_store), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert isinstance(rows, list) and len(rows) >= 25
    assert all(list(r) == CLAIM_COLUMNS for r in rows)
    assert {"kind", "source", "p_adjusted"} <= set(rows[0])
    assert {r["verdict"] for r in rows} <= set(VERDICTS) and {r["kind"] for r in rows} <= set(KINDS)
    assert [r["kind"] for r in rows] == sorted((r["kind"] for r in rows), key=KINDS.index)
    assert all(isinstance(r["n_runs"], int) for r in rows)


def test_deferred_tables_are_computed_once_on_first_use():
    """Report-only tables (`Analysis.deferred`) cost nothing until drawn, then are kept in `tables`."""
    from gclab.analysis.result import Analysis, defer

    calls = []

    def make(con):
        calls.append(con)
        return {"a": pl.DataFrame({"x": [1]}), "b": pl.DataFrame({"x": [2]})}

    result = Analysis("demo", {"kept": pl.DataFrame({"x": [0]})}, deferred=defer("con", {("a", "b"): make}))
    assert calls == [] and set(result.tables) == {"kept"}
    assert result.table("b")["x"].to_list() == [2] and result.table("a")["x"].to_list() == [1]
    assert calls == ["con"] and set(result.tables) == {"kept", "a", "b"}


def test_summary_counts_absent_in_verdict_order_and_only_paper_rows():
    from gclab.analysis.result import claim, claims_frame

    verdicts = ["inconclusive", "absent", "supported", "absent"]
    rows = [claim(f"c{i}", "fig4", "s", v, kind="paper", source="x", family="gc:fig4") for i, v in enumerate(verdicts)]
    rows.append(claim("t", "measures", "s", "absent", kind="toolkit", source="x"))
    assert summary(claims_frame(rows)) == "4 paper claims: 1 supported, 2 absent, 1 inconclusive"

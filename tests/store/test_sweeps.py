"""`sql_in`, the one predicate that selects runs by sweep name, run through DuckDB."""

import duckdb
import pytest

from gclab.store.sweeps import FIG4_SWEEPS, PAPER_SWEEPS, sql_in


@pytest.fixture
def con():
    con = duckdb.connect()
    names = list(dict.fromkeys([*PAPER_SWEEPS, *FIG4_SWEEPS, "mine", "o'brien"]))  # fig4_momentum: [paper] only
    con.execute("CREATE TABLE runs AS SELECT unnest($1::VARCHAR[]) AS sweep", [names])
    return con


def _selected(con, predicate: str) -> set[str]:
    return {row[0] for row in con.execute(f"SELECT r.sweep FROM runs r WHERE {predicate}").fetchall()}


def test_selects_exactly_the_named_sweeps(con):
    assert _selected(con, sql_in(FIG4_SWEEPS)) == set(FIG4_SWEEPS)
    assert _selected(con, sql_in(["igr"])) == {"igr"}
    assert _selected(con, sql_in(["nope"])) == set()


def test_another_column_name(con):
    con.execute("CREATE TABLE rs AS SELECT sweep FROM runs")
    assert {r[0] for r in con.execute(f"SELECT sweep FROM rs WHERE {sql_in(['fig2', 'bfd'], 'sweep')}").fetchall()} == {
        "fig2",
        "bfd",
    }


def test_a_quote_in_a_name_is_a_literal_not_sql(con):
    assert _selected(con, sql_in(["o'brien"])) == {"o'brien"}


@pytest.mark.parametrize("bad", ["fig4", [], ()])
def test_a_bare_string_or_nothing_is_refused(bad):
    with pytest.raises(ValueError, match="non-empty list of sweep names"):
        sql_in(bad)

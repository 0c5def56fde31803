"""`gclab {report,sql,claims}` — the read side of gclab. Never imports torch."""

from __future__ import annotations

import argparse
import json
import sys

import polars as pl

from gclab.store.db import StoreError, require_store_at
from gclab.store.readonly import DEFAULT_MEMORY_LIMIT, DEFAULT_TIMEOUT_S, Interrupted


def _sql(args) -> None:
    from gclab.store.readonly import bounded_query, check_limits, check_read_only, describe, sandbox

    check_limits(max_rows=args.max_rows, timeout_s=args.timeout, memory_limit=args.memory_limit)
    if args.query:
        check_read_only(args.query)  # before the store is even scanned
    with sandbox(args.data, memory_limit=args.memory_limit) as con:
        if args.query:
            frame, more = bounded_query(
                con, args.query, max_rows=args.max_rows, timeout_s=args.timeout, memory_limit=args.memory_limit
            )
        else:
            frame, more = describe(con), False
    with pl.Config(tbl_rows=args.max_rows, tbl_cols=-1, fmt_str_lengths=200, tbl_width_chars=200):
        print(frame)
    if more:
        print(
            f"more rows: only the first {args.max_rows} were fetched; add LIMIT/WHERE, or raise --max-rows "
            f"(make sql ROWS=...)"
        )


def _claims(args) -> None:
    from gclab.analysis.claims import by_kind, claims_table, summary
    from gclab.store.db import connect

    with connect(args.data) as con:
        table = by_kind(claims_table(con))
    if args.json:
        json.dump(table.to_dicts(), sys.stdout, indent=1, default=str)
        print()
        return
    # The method text and source are in --json and the report; the terminal keeps what fits a line.
    shown = table.select(
        "kind", "claim", "verdict", "family", "value", "delta", "p_value", "p_adjusted", "n_seeds", "seeds_needed"
    )
    with pl.Config(
        tbl_rows=-1,
        tbl_cols=-1,
        fmt_str_lengths=80,
        tbl_width_chars=220,
        tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=True,
    ):
        for (kind,), part in shown.group_by("kind", maintain_order=True):
            print(f"\n== {kind} ({part.height} rows)")
            print(part.drop("kind"))
    print(
        f"\n{summary(table)}; p_adjusted = Holm within each family of paper rows (verdicts of paper rows use it); "
        "delta = smallest effect of interest; seeds_needed = seeds for 80% power at delta"
    )


# The toolkit's headline claims: double descent and the U-curve, Theorem 5.1, the Eq. 6 identity, Fig. 4.
HEADLINE = ("fig5", "thm51", "igr", "fig4")


def print_summary(table: pl.DataFrame | None) -> None:
    """Verdict counts and the headline rows, a few lines for the end of `make demo` / `make report`."""
    from gclab.analysis.claims import summary
    from gclab.analysis.result import INSUFFICIENT

    if table is None:
        print("claims: not available (see the report's claims section)")
        return
    answered = table.filter(pl.col("verdict") != INSUFFICIENT).height
    print(
        f"claims: {summary(table)}; {answered} of {table.height} rows answered (any kind, verdict other than "
        f"'{INSUFFICIENT}')"
    )
    head = table.filter(pl.col("experiment").is_in(HEADLINE) & pl.col("kind").is_in(["paper", "check"]))
    for r in head.iter_rows(named=True):
        text = r["claim"] if len(r["claim"]) <= 78 else r["claim"][:77] + "…"
        print(f"  {r['experiment']:<6} {r['verdict']:<17} {text}")


def _report(args) -> None:
    from gclab.analysis.report import render
    from gclab.analysis.report.build import OutputFolderError

    try:
        path = render(args.data, args.out)  # checks --out before any analysis runs
    except OutputFolderError as exc:
        raise StoreError(str(exc)) from None
    print_summary(render.last_claims)
    print(f"report: {path}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="gclab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn, help_ in [
        ("sql", _sql, "run one read-only SQL statement over the run store"),
        ("claims", _claims, "the paper's claims with verdicts"),
        ("report", _report, "render reports/index.html and figures"),
    ]:
        p = sub.add_parser(name, help=help_)
        p.add_argument("--data", default="data", help="run store folder (default ./data)")
        p.add_argument("--out", default="reports", help="output folder (default ./reports)")
        p.set_defaults(fn=fn)
    sub.choices["sql"].add_argument("-q", "--query", help="SQL; without it, list the views and their columns")
    sub.choices["sql"].add_argument("--max-rows", type=int, default=50, help="rows to fetch and print (default 50)")
    sub.choices["sql"].add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help=f"seconds before the query is stopped (default {DEFAULT_TIMEOUT_S:g})",
    )
    sub.choices["sql"].add_argument(
        "--memory-limit",
        default=DEFAULT_MEMORY_LIMIT,
        help=f"DuckDB memory limit, e.g. 8GB (default {DEFAULT_MEMORY_LIMIT})",
    )
    sub.choices["claims"].add_argument("--json", action="store_true", help="print a JSON list of objects")
    args = parser.parse_args(argv)
    try:
        require_store_at(args.data)
        args.fn(args)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Interrupted:
        print("error: query interrupted (Ctrl-C); nothing was changed", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

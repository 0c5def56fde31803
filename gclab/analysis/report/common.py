"""The pieces every section shares: what a section is, the render context, chart styling.

A section module has `build(ctx: Context) -> Section`. It draws the tables of the analysis
modules (`ctx.table(module, key)`, from `Analysis.tables`) and returns Altair charts plus a few
lines of text. What it reads from the store itself is display metadata only: run config for
tooltips (`run_config`), the completed runs per sweep (`Context.completed`) and the overview's
inventory. Page assembly and figure export live elsewhere (page.py, export.py).
"""

from __future__ import annotations

import html
import importlib
import math
from dataclasses import dataclass, field
from typing import Any

import altair as alt
import polars as pl
from altair.utils.schemapi import debug_mode

from gclab.analysis.result import VERDICTS, Analysis

# Run config carried into tooltips (joined in the browser by a lookup on run_id).
CONFIG_COLS = (
    "run_id",
    "sweep",
    "seed",
    "status",
    "model",
    "dataset",
    "width",
    "depth",
    "activation",
    "init",
    "optimizer",
    "lr",
    "batch_size",
    "l2",
    "spectral_reg",
    "flatness_reg",
    "gc_reg",
    "label_noise",
)
PANEL_W, PANEL_H = 300, 200
SIG_FIGS = 4  # significant digits kept in chart data
FONT = "Liberation Sans, DejaVu Sans, Helvetica, Arial, sans-serif"


def collect_note(sweep: str) -> str:
    return f"No runs yet — collect with `make collect SWEEP={sweep}`."


@dataclass
class Figure:
    """One chart: `name` is the file stem under figures/ (e.g. fig5_width)."""

    name: str
    chart: Any  # an Altair top-level chart
    caption: str = ""
    spec: dict | None = None  # its Vega-Lite JSON, filled in by build.py


@dataclass
class Section:
    id: str
    title: str
    question: str
    figures: list[Figure] = field(default_factory=list)
    html_blocks: list[str] = field(default_factory=list)  # extra HTML (tables) after the charts
    caveats: list[str] = field(default_factory=list)
    empty_note: str | None = None  # set when there is nothing to show
    claim_experiments: tuple[str, ...] = ()  # claims_table `experiment` values shown next to it


class Context:
    """The connection, the sweeps present, and lazily computed analysis results."""

    def __init__(self, con, data_dir):
        self.con = con
        self.data_dir = data_dir
        self.warnings: list[str] = []
        self._analyses: dict[str, Any] = {}
        counts = query(con, "SELECT sweep, count(*) FILTER (WHERE status = 'completed') AS n FROM runs GROUP BY sweep")
        self.completed: dict[str, int] = dict(zip(counts["sweep"].to_list(), counts["n"].to_list()))

    def has(self, *sweeps: str) -> bool:
        """Whether any of the sweeps has at least one completed run."""
        return any(self.completed.get(s, 0) > 0 for s in sweeps)

    def set_analyses(self, results: dict) -> None:
        """Results already computed (by `analysis.claims.run_all`), by module name."""
        self._analyses.update(results)

    def analysis(self, name: str) -> Analysis:
        """`analysis.<name>.analyze(con)`, computed once."""
        if name not in self._analyses:
            self._analyses[name] = importlib.import_module(f"gclab.analysis.{name}").analyze(self.con)
        return self._analyses[name]

    def table(self, name: str, key: str) -> pl.DataFrame:
        """The table `key` of `analysis.<name>`'s result, as charts hold it (`finite`: rounded, no NaN)."""
        result = self.analysis(name)
        if key not in result.tables and key not in result.deferred:  # `run_all` made its exception a claims row
            raise LookupError(f"analysis.{name} has no table {key!r}: it failed, see its row in the claims table")
        return finite(result.table(key))


def query(con, sql: str, params=None) -> pl.DataFrame:
    """DuckDB → Polars with NaN turned into null (JSON has no NaN) and infinities dropped to null."""
    from gclab.store.db import query as store_query

    return finite(store_query(con, sql, params))


def finite(df: pl.DataFrame, sig_figs: int | None = SIG_FIGS) -> pl.DataFrame:
    """NaN/±inf → null; floats rounded to `sig_figs` significant digits (charts need no more,
    and 17-digit JSON floats would double the page's size)."""
    floats = [c for c, t in df.schema.items() if t in (pl.Float64, pl.Float32)]
    if not floats:
        return df
    exprs = []
    for c in floats:
        e = pl.when(pl.col(c).is_finite()).then(pl.col(c)).otherwise(None)
        exprs.append((e.round_sig_figs(sig_figs) if sig_figs else e).alias(c))
    return df.with_columns(exprs)


def run_config(con, where: str = "TRUE") -> pl.DataFrame:
    """The tooltip config of the runs matching `where` (a SQL predicate over runs)."""
    return query(con, f"SELECT {', '.join('r.' + c for c in CONFIG_COLS)} FROM runs r WHERE {where} ORDER BY r.run_id")


def with_config(chart, config: pl.DataFrame, fields: tuple[str, ...] | None = None):
    """Join run config (every column of `config` by default) into each row in the browser, by
    run_id, so it is stored once per run rather than once per point."""
    names = [f for f in (fields or config.columns) if f != "run_id" and f in config.columns]
    # Altair's debug mode would validate every row of `config` here, once per chart; the spec is
    # validated once when it is built (build.chart_spec).
    with debug_mode(False):
        lookup = alt.LookupData(data=config, key="run_id", fields=names)
    return chart.transform_lookup(lookup="run_id", from_=lookup)


def config_tooltip(*extra) -> list:
    base = [
        alt.Tooltip("run_id:N", title="run"),
        alt.Tooltip("sweep:N"),
        alt.Tooltip("seed:Q"),
        alt.Tooltip("lr:Q", format=".3g"),
        alt.Tooltip("batch_size:Q", title="batch size"),
        alt.Tooltip("width:Q"),
        alt.Tooltip("depth:Q"),
        alt.Tooltip("optimizer:N"),
        alt.Tooltip("init:N"),
        alt.Tooltip("activation:N"),
    ]
    return list(extra) + base


def log_ticks(lo: float, hi: float) -> list[float]:
    """Tick values for a log axis: decades, with 2× and 5× steps when the span is short."""
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    for mults in (
        (1,),
        (1, 2, 5),
        (1, 2, 3, 5),
        (1, 1.5, 2, 3, 4, 5, 6, 7, 8, 9),
        tuple(1 + i / 10 for i in range(90)),
    ):
        inside = [round(m * 10.0**k, 12) for k in range(a, b + 1) for m in mults if lo <= m * 10.0**k <= hi]
        if len(inside) >= 3:
            return inside if len(inside) <= 12 else inside[:: math.ceil(len(inside) / 10)]
    return inside


# Plain numbers in the readable range, 1e-6 style outside it.
LOG_LABEL = (
    "datum.value >= 0.001 && datum.value < 100000 ? format(datum.value, '~g') "
    ": replace(format(datum.value, '.0e'), 'e-0', 'e-')"
)


def log_scale(*columns, pad: float = 1.2, ticks: list | None = None) -> tuple[alt.Scale, alt.Axis]:
    """A log scale fitted to the positive values of the given series (no 'nice' widening to whole
    decades, which leaves most of a panel empty) and an axis with readable tick values."""
    # In Polars, not a Python loop: a column may hold one value per run.
    vals = pl.concat([pl.Series(values=col, dtype=pl.Float64, strict=False) for col in columns])
    vals = vals.filter(vals.is_finite() & (vals > 0))
    if vals.is_empty():
        return alt.Scale(type="log"), alt.Axis(format="~g")
    lo, hi = float(vals.min()) / pad, float(vals.max()) * pad
    return (
        alt.Scale(type="log", domain=[lo, hi], nice=False),
        alt.Axis(values=ticks if ticks is not None else log_ticks(lo, hi), labelExpr=LOG_LABEL),
    )


VERDICT_COLORS = dict(zip(VERDICTS, ("#2e7d32", "#c62828", "#1565c0", "#8d8d8d", "#d0d0d0")))


def estimate_chart(
    df: pl.DataFrame, row: str, value: str, lo: str, hi: str, *, x_title: str, title: str, facet: str | None = None
):
    """One estimate per row with its CI (an analysis table's columns), coloured by its `verdict`
    column, and a rule at 0 (no effect): a failing row is a visible red dot, not averaged away."""
    color = alt.Color("verdict:N", scale=alt.Scale(domain=list(VERDICT_COLORS), range=list(VERDICT_COLORS.values())))
    base = alt.Chart().encode(y=alt.Y(f"{row}:N", title=None, sort=None))
    tip = [
        f"{row}:N",
        alt.Tooltip(f"{value}:Q", format=".3g"),
        alt.Tooltip(f"{lo}:Q", title="95% CI low", format=".3g"),
        alt.Tooltip(f"{hi}:Q", title="95% CI high", format=".3g"),
        "verdict:N",
    ]
    layers = [
        alt.Chart().mark_rule(color="#555", strokeDash=[3, 3]).encode(x=alt.datum(0)),
        base.mark_errorbar().encode(x=alt.X(f"{lo}:Q", title=x_title), x2=f"{hi}:Q", color=color),
        base.mark_point(filled=True, size=60).encode(x=alt.X(f"{value}:Q", title=x_title), color=color, tooltip=tip),
    ]
    chart = alt.layer(*layers, data=df).properties(width=PANEL_W, height=max(60, 18 * df[row].n_unique()))
    return (chart.facet(column=alt.Column(f"{facet}:N", title=None)) if facet else chart).properties(title=title)


def style(chart):
    """House style applied to every top-level chart."""
    return (
        chart.configure(font=FONT)
        .configure_axis(labelFontSize=11, titleFontSize=12, grid=True, gridOpacity=0.5)
        .configure_legend(labelFontSize=11, titleFontSize=11)
        .configure_title(fontSize=13, anchor="start")
        .configure_view(stroke="#ccc")
    )


def esc(text: Any) -> str:
    return html.escape("" if text is None else str(text))


def md_code(text: str) -> str:
    """Escape text and turn `code` spans into <code>."""
    parts = esc(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))

"""`render(data_dir, out_dir)`: query the store, build every section, write index.html and figures."""

from __future__ import annotations

import importlib
import os
import sys
import threading
import time
import traceback
from pathlib import Path

import altair as alt
import jsonschema
from altair.vegalite.v6.schema.core import Root
from tqdm import tqdm

from gclab import experiments
from gclab.analysis.claims import snapshot
from gclab.analysis.curves import ROW_BUDGET
from gclab.analysis.report.claims_table import load_claims, verdict_aside
from gclab.analysis.report.common import Context, Section, style
from gclab.analysis.report.page import js_bundle, page_html, section_html, vl_version
from gclab.store.db import connect

# The sections before the experiments', under gclab/analysis/report/.
FRONT_SECTIONS = ("overview", "claims_table", "calibration", "demo")
PACKAGE = "gclab.analysis.report."


def section_names() -> tuple[str, ...]:
    """Section modules in page order, each with build(ctx) -> Section: FRONT_SECTIONS, then each experiment's
    section (`gclab.experiments`); a module under gclab/analysis/report/ by its last name, any other dotted."""
    dotted = experiments.section_modules()
    return (*FRONT_SECTIONS, *(d.removeprefix(PACKAGE) if d.startswith(PACKAGE) else d for d in dotted))


SECTIONS = section_names()
# Altair's guard against inlining huge data, set just above what the binned curves allow.
MAX_ROWS = ROW_BUDGET + 5_000
VALIDATED_ROWS = 3  # rows of each dataset checked against the Vega-Lite schema (chart_spec)


class SectionError(RuntimeError):
    pass


class OutputFolderError(ValueError):
    """The output folder cannot take the report (one line, says what to do)."""


def check_out_dir(out_dir: Path, *, figures: bool) -> None:
    """Make sure `out_dir` (and its figures/) can be written, before any analysis runs: create them
    if absent, then write and remove a probe file. Nothing already there is touched."""
    for folder in (out_dir, out_dir / "figures") if figures else (out_dir,):
        if os.path.lexists(folder) and not folder.is_dir():
            raise OutputFolderError(f"--out {folder} is a file; point --out at a folder (default ./reports)")
        probe = folder / f".gclab-write-probe-{os.getpid()}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise OutputFolderError(
                f"--out {folder} cannot be written ({exc.strerror or exc}); point --out at a folder you can write"
            ) from None


def rounded_values(data=None, max_rows: int = MAX_ROWS):
    """Altair data transformer: Altair's default (row guard, inline values) after turning NaN/inf
    into null and rounding floats to a few significant digits, for every dataset of every chart."""
    import polars as pl
    from altair.vegalite.data import default_data_transformer

    from gclab.analysis.report.common import finite

    def pipe(df):
        return default_data_transformer(finite(df) if isinstance(df, pl.DataFrame) else df, max_rows=max_rows)

    return pipe if data is None else pipe(data)


alt.data_transformers.register("gclab_rounded", rounded_values)


def render(data_dir, out_dir, *, strict: bool = False, figures: bool = True, progress: bool = True) -> Path:
    """Render `<out_dir>/index.html` and `<out_dir>/figures/*.{png,svg}`; return index.html's path.
    OutputFolderError, before anything runs, if `out_dir` cannot be written. Only files this
    report writes are replaced or removed (export.export_all); anything else there is left alone.

    A section that raises is replaced by a note naming the error (the rest of the report still
    renders) unless `strict`, which re-raises (tests use it).
    """
    out_dir = Path(out_dir)
    check_out_dir(out_dir, figures=figures)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now

    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else (lambda msg: None)
    # vl-convert builds the JS bundle (~1.5 s) in a thread while DuckDB reads the store.
    bundle = threading.Thread(target=js_bundle, daemon=True)
    bundle.start()
    say(f"report: reading the store {data_dir} ...")
    con = connect(data_dir)
    with alt.data_transformers.enable("gclab_rounded", max_rows=MAX_ROWS), con, snapshot(con):
        lap("store")
        ctx = Context(con, data_dir)
        ctx.out_dir = out_dir  # the calibration section reads out_dir/calibration.json
        say("report: running the analyses (claims and verdicts) ...")
        ctx.claims = load_claims(ctx)
        lap("claims")
        built: list[Section] = []
        bar = tqdm(section_names(), desc="report sections", unit="section", disable=not progress, file=sys.stderr)
        for name in bar:
            bar.set_postfix_str(name)
            built.append(_build_section(name, ctx, strict))
            lap(f"section:{name}")
        specs = {fig.name: fig.spec for sec in built for fig in sec.figures}
        lap("specs")
    if figures and specs:
        from gclab.analysis.report.export import export_all

        with tqdm(
            total=len(specs), desc="figures (png+svg)", unit="chart", disable=not progress, file=sys.stderr
        ) as pbar:
            export_all(specs, out_dir / "figures", vl_version(), progress=pbar)
        lap("figures")
    rendered = [
        (
            (sec.id, sec.title),
            section_html(sec, specs, verdict_aside(ctx.claims, sec.claim_experiments)),
        )
        for sec in built
    ]
    bundle.join()
    doc = page_html(rendered, data_dir=str(data_dir), warnings=ctx.warnings)
    index = out_dir / "index.html"
    tmp = index.with_name(f".index.html.tmp-{os.getpid()}")
    tmp.write_text(doc, encoding="utf-8")
    os.replace(tmp, index)
    lap("page")
    render.last_timings = timings  # for gclab/bench/report.py
    render.last_claims = ctx.claims  # for the summary `gclab report` prints
    return index


def chart_spec(chart) -> dict:
    """A chart's Vega-Lite JSON in house style, validated against the schema with each dataset cut to
    its first rows: to the schema a data row is any object, and checking 10⁴ of them took seconds a chart."""
    spec = style(chart).to_dict(validate=False)
    head = {k: v[:VALIDATED_ROWS] for k, v in spec.get("datasets", {}).items()}
    try:
        Root.validate({**spec, "datasets": head} if head else spec)
    except jsonschema.ValidationError:
        style(chart).to_dict()  # Altair's full check, for its message naming the property
        raise
    return spec


def _build_section(name: str, ctx: Context, strict: bool) -> Section:
    module = importlib.import_module(name if "." in name else PACKAGE + name)
    try:
        sec = module.build(ctx)
        for fig in sec.figures:  # to Vega-Lite JSON here, so a chart that fails fails its section only
            fig.spec = chart_spec(fig.chart)
        return sec
    except Exception as exc:
        if strict:
            raise SectionError(f"section {name} failed: {type(exc).__name__}: {exc}") from exc
        tb = traceback.format_exc(limit=-3)
        print(f"warning: report section {name} failed:\n{tb}", file=sys.stderr)
        msg = f"This section failed to render ({type(exc).__name__}: {' '.join(str(exc).split())[:300]})."
        ctx.warnings.append(f"Report section `{name}` failed to render; see the note in that section.")
        return Section(id=name, title=getattr(module, "TITLE", name), question="", empty_note=msg)


render.last_timings = {}
render.last_claims = None

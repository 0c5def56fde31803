"""Test loss against step, one line per run, for whatever the store holds."""

from __future__ import annotations

import altair as alt
import polars as pl

from gclab.analysis.report.budget import QUANTILES, aggregated_note, per_run
from gclab.analysis.report.common import PANEL_H, Figure, Section, config_tooltip, log_scale, run_config, with_config

MAX_LABELLED = 12
STEP_BINS = 100  # step bins of the per-sweep band drawn above the row budget
LABEL_COLS = (
    "sweep",
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
    "seed",
)


def _labels(config: pl.DataFrame) -> pl.Series:
    """'demo, lr=0.05, seed=1'-style names: the sweep, then what differs between runs of that sweep."""
    labels = {}
    for (sweep,), group in config.group_by("sweep"):
        varying = [c for c in LABEL_COLS if c != "sweep" and c in group.columns and group[c].n_unique() > 1]
        for row in group.iter_rows(named=True):
            labels[row["run_id"]] = ", ".join(
                [str(sweep)] + [f"{c}={row[c]:g}" if isinstance(row[c], float) else f"{c}={row[c]}" for c in varying]
            )
    return pl.Series("label", [labels[r] for r in config["run_id"]])


Y_TITLE = "test loss (mean over the test split, log)"


def build(ctx) -> Section:
    sec = Section(
        id="demo",
        title="Training runs: test loss over training",
        question="How does the test loss of every completed run evolve with optimizer steps?",
    )
    if not ctx.completed or not any(ctx.completed.values()):
        sec.empty_note = "No runs yet — collect with `make collect SWEEP=demo` (or `make demo`)."
        return sec
    curves = ctx.table("training_curves", "test_loss")
    if curves.is_empty():
        sec.empty_note = "No test evaluations in the store yet."
        return sec
    # The sweep, like the rest of the config, is joined in the browser (stored once per run).
    config = run_config(ctx.con, "r.status = 'completed'")
    config = config.filter(pl.col("run_id").is_in(curves["run_id"].unique().implode()))
    if per_run(curves.height):
        sec.figures.append(_per_run_figure(curves, config))
    else:
        sec.figures.append(_per_sweep_figure(curves, config))
    sec.caveats.append("Metrics are computed in eval mode (BatchNorm uses running statistics).")
    return sec


def _per_run_figure(curves: pl.DataFrame, config: pl.DataFrame) -> Figure:
    # Few runs: one colour per run, named by what differs between them; many: one per sweep.
    field, title = (
        ("label", "run (click to select)") if config.height <= MAX_LABELLED else ("sweep", "sweep (click to select)")
    )
    if field == "label":
        config = config.with_columns(_labels(config))
    domain = sorted(config[field].unique().to_list())
    ys, ya = log_scale(curves["test_loss"])
    pick = alt.selection_point(fields=[field], bind="legend", name="demo_pick")
    base = alt.Chart(curves).encode(
        x=alt.X("step:Q", title="optimizer step"),
        y=alt.Y("test_loss:Q", title=Y_TITLE, scale=ys, axis=ya),
        color=alt.Color(
            f"{field}:N",
            title=title,
            legend=alt.Legend(labelLimit=420),
            scale=alt.Scale(domain=domain, scheme="category20" if len(domain) > 10 else "tableau10"),
        ),
        detail="run_id:N",
        # Opaque by default: a PNG of 1,000 semi-transparent lines takes resvg ~10 s to rasterise.
        opacity=alt.condition(pick, alt.value(1.0), alt.value(0.06)),
        tooltip=config_tooltip(
            alt.Tooltip("test_loss:Q", title="test loss", format=".4g"), alt.Tooltip("step:Q", format=".0f")
        ),
    )
    chart = (
        with_config(base, config)
        .mark_line(strokeWidth=1.0 if len(curves) > 3000 else 1.4)
        .add_params(pick)
        .properties(width=720, height=PANEL_H + 60, title="Test loss vs step (one line per run)")
    )
    return Figure(
        "demo_test_loss",
        chart,
        f"Each line is one run; click a {'run' if field == 'label' else 'sweep'} in the legend "
        "to highlight it, hover for the run's config. Log-scaled y; curves binned to at most "
        "100 points per run.",
    )


def per_sweep_band(curves: pl.DataFrame, config: pl.DataFrame) -> pl.DataFrame:
    """Per sweep and step bin (`STEP_BINS` equal bins of the sweep's steps): the mean test loss of the
    runs' binned curves and its 10–90% band over them, `n` curve points."""
    df = curves.join(config.select("run_id", "sweep"), on="run_id")
    top = pl.col("step").max().over("sweep")
    df = df.with_columns((pl.col("step") * STEP_BINS / (top + 1)).floor().alias("bin"))
    lo, hi = QUANTILES
    return (
        df.group_by("sweep", "bin")
        .agg(
            pl.col("step").mean(),
            pl.col("test_loss").mean().alias("mean"),
            pl.col("test_loss").quantile(lo, interpolation="linear").alias("q10"),
            pl.col("test_loss").quantile(hi, interpolation="linear").alias("q90"),
            pl.len().alias("n"),
        )
        .drop("bin")
        .sort("sweep", "step")
    )


def _per_sweep_figure(curves: pl.DataFrame, config: pl.DataFrame) -> Figure:
    """Above the row budget: per sweep, the mean curve and the 10–90% band of the runs' curves."""
    band = per_sweep_band(curves, config)
    ys, ya = log_scale(band["q10"], band["q90"])
    pick = alt.selection_point(fields=["sweep"], bind="legend", name="demo_pick")
    base = alt.Chart(band).encode(
        x=alt.X("step:Q", title="optimizer step"),
        color=alt.Color("sweep:N", title="sweep (click to select)", scale=alt.Scale(scheme="category20")),
    )
    area = base.mark_area().encode(
        y=alt.Y("q10:Q", title=Y_TITLE, scale=ys, axis=ya),
        y2="q90:Q",
        opacity=alt.condition(pick, alt.value(0.2), alt.value(0.02)),
    )
    line = base.mark_line(strokeWidth=1.4).encode(
        y=alt.Y("mean:Q", title=Y_TITLE, scale=ys, axis=ya),
        opacity=alt.condition(pick, alt.value(1.0), alt.value(0.1)),
        tooltip=[
            "sweep:N",
            alt.Tooltip("step:Q", format=".0f"),
            alt.Tooltip("mean:Q", title="mean test loss", format=".4g"),
            alt.Tooltip("q10:Q", title="10th pct", format=".4g"),
            alt.Tooltip("q90:Q", title="90th pct", format=".4g"),
            alt.Tooltip("n:Q", title="curve points"),
        ],
    )
    chart = alt.layer(area, line.add_params(pick)).properties(
        width=720, height=PANEL_H + 60, title="Test loss vs step (per sweep: mean and 10–90% band of the runs)"
    )
    return Figure(
        "demo_test_loss",
        chart,
        "Per sweep, the mean test loss of its runs' binned curves (line) and the 10–90% band over "
        "the runs (shaded); click a sweep in the legend to highlight it. Log-scaled y."
        + aggregated_note(config.height),
    )

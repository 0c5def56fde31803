"""Fig. 2: networks at initialization — outputs along the hypercube diagonal, and GC at init
against depth per init scheme (log scale)."""

from __future__ import annotations

import altair as alt

from gclab.analysis.report.common import (
    PANEL_H,
    PANEL_W,
    Figure,
    Section,
    add_ci,
    collect_note,
    config_tooltip,
    estimate_chart,
    log_scale,
    query,
    run_config,
    with_config,
)

TITLE = "Fig. 2 — deeper networks start closer to the zero function"
RUNS = "r.sweep = 'fig2' AND r.status = 'completed'"
MAX_SEEDS = 3
DIAG_BUDGET = 9_000  # rows of the diagonal chart


def build(ctx) -> Section:
    sec = Section(
        id="fig2",
        title=TITLE,
        question="At initialization, do deeper networks compute functions closer to zero, with lower "
        "GC, whatever the init scheme and activation?",
        claim_experiments=("fig2",),
    )
    if not ctx.has("fig2"):
        sec.empty_note = collect_note("fig2")
        return sec
    seeds = query(
        ctx.con,
        f"SELECT DISTINCT r.seed FROM runs r SEMI JOIN probes p ON p.run_id = r.run_id "
        f"WHERE {RUNS} ORDER BY r.seed LIMIT {MAX_SEEDS}",
    )["seed"].to_list()
    # Keep the chart within the row budget: every k-th point along the diagonal when there are
    # many (depth × init × activation × seed) curves.
    size = query(
        ctx.con,
        f"""SELECT count(*) AS n FROM (SELECT DISTINCT p.run_id, p.t FROM probes p
                              JOIN runs r ON r.run_id = p.run_id WHERE {RUNS}
                              AND r.seed IN ({", ".join(map(str, seeds)) or "NULL"}))""",
    )["n"][0]
    stride = max(1, -(-int(size) // DIAG_BUDGET))
    diag = query(
        ctx.con,
        f"""
        WITH c AS (
            SELECT r.seed, r.depth, r.init, r.activation, p.t,
                   avg(p.output) AS mean_out, max(p.output) AS max_out
            FROM probes p JOIN runs r ON r.run_id = p.run_id
            WHERE {RUNS} AND r.seed IN ({", ".join(map(str, seeds)) or "NULL"})
              AND p.step = (SELECT min(step) FROM probes q WHERE q.run_id = p.run_id)
            GROUP BY ALL),
        n AS (SELECT *, row_number() OVER w - 1 AS i, count(*) OVER w2 AS m FROM c
              WINDOW w AS (PARTITION BY seed, depth, init, activation ORDER BY t),
                     w2 AS (PARTITION BY seed, depth, init, activation))
        SELECT seed, depth, init, activation, t, mean_out, max_out FROM n
        WHERE i % {stride} = 0 OR i = m - 1
        ORDER BY init, activation, seed, depth, t""",
    )
    if diag.height:
        sec.figures.append(
            Figure(
                "fig2_diagonal",
                _diagonal(diag),
                "Outputs at init along the line P₁ + (P₂ − P₁)x between opposite corners of "
                "[−1, 1]^d (x rescaled to [−1, 1]); mean and max over the output logits of one "
                "network per depth. Pick the init scheme, activation and seed in the menus.",
            )
        )
    gc = query(
        ctx.con,
        f"""
        SELECT r.run_id, r.depth, r.init, r.activation, r.seed, e.gc
        FROM evals e JOIN runs r ON r.run_id = e.run_id
        WHERE {RUNS} AND e.split = 'train'
          AND e.step = (SELECT min(step) FROM evals f WHERE f.run_id = e.run_id)
        ORDER BY r.init, r.activation, r.depth""",
    )
    if gc.height:
        sec.figures.append(
            Figure(
                "fig2_gc_depth",
                _gc_depth(gc, ctx),
                "GC at initialization on the training inputs against depth, per init scheme "
                "(colour) and activation (dash). Lines: mean over seeds with 95% t-intervals "
                "(error bars); dots: single runs. Log-scaled y.",
            )
        )
    fam = _family_slopes(ctx)
    if fam is not None:
        sec.figures.append(
            Figure(
                "fig2_families",
                estimate_chart(
                    fam,
                    "family",
                    "slope",
                    "slope_lo",
                    "slope_hi",
                    x_title="slope per depth step (log scale)",
                    facet="claim",
                    title="Depth trend per init/activation family (the paper's scheme first, then pooled)",
                ),
                "The slope of log GC (left) and log |output| (right) per step of the depth grid, "
                "with seed fixed effects, "
                "one row per family (`analysis.trends`); negative = the paper's direction. Colour = verdict of that "
                "family's row: a family where the claim fails shows red, whatever the pooled fit says.",
            )
        )
    sec.caveats += [
        "Runs of this sweep take no optimizer step (`steps = 0`): every number is at initialization.",
        "GC ≤ 0 cannot be shown on a log axis; such runs are left out of the GC-vs-depth chart.",
    ]
    return sec


def _diagonal(diag):
    inits = sorted(diag["init"].unique().to_list())
    acts = sorted(diag["activation"].unique().to_list())
    init_p = alt.param(name="fig2_init", value=inits[0], bind=alt.binding_select(options=inits, name="init "))
    act_p = alt.param(name="fig2_act", value=acts[0], bind=alt.binding_select(options=acts, name="activation "))
    seeds = sorted(diag["seed"].unique().to_list())
    seed_p = alt.param(name="fig2_seed", value=seeds[0], bind=alt.binding_select(options=seeds, name="seed "))
    base = (
        alt.Chart(diag)
        .transform_filter((alt.datum.init == init_p) & (alt.datum.activation == act_p) & (alt.datum.seed == seed_p))
        .encode(
            x=alt.X("t:Q", title="position x along the diagonal"),
            color=alt.Color("depth:O", title="depth (hidden layers)", scale=alt.Scale(scheme="viridis")),
            tooltip=[
                "depth:Q",
                "init:N",
                "activation:N",
                alt.Tooltip("t:Q", format=".2f"),
                alt.Tooltip("mean_out:Q", title="mean output", format=".3g"),
                alt.Tooltip("max_out:Q", title="max output", format=".3g"),
                "seed:Q",
            ],
        )
    )
    mean = base.mark_line().encode(y=alt.Y("mean_out:Q", title="mean output over logits"))
    mx = base.mark_line().encode(y=alt.Y("max_out:Q", title="max output over logits"))
    return alt.hconcat(
        mean.properties(width=PANEL_W, height=PANEL_H, title="Mean output at init"),
        mx.properties(width=PANEL_W, height=PANEL_H, title="Max output at init"),
    ).add_params(init_p, act_p, seed_p)


def _gc_depth(gc, ctx):
    import polars as pl

    pos = gc.filter(pl.col("gc") > 0)
    agg = pos.group_by("depth", "init", "activation").agg(
        pl.col("gc").mean().alias("gc_mean"), pl.col("gc").std().alias("gc_sd"), pl.len().alias("n")
    )
    agg = add_ci(agg, "gc", "gc_mean", "gc_sd", "n").with_columns(
        pl.when(pl.col("gc_lo") > 0).then(pl.col("gc_lo")).otherwise(pl.col("gc_mean")).alias("gc_lo")
    )
    agg = agg.sort("init", "activation", "depth")
    pick = alt.selection_point(fields=["init"], bind="legend", name="fig2_pick")
    color = alt.Color("init:N", title="init scheme (click)")
    x = alt.X("depth:Q", title="depth (hidden layers)")
    y_title = "GC at initialization (log)"
    ys, ya = log_scale(agg["gc_lo"], agg["gc_hi"], pos["gc"])
    lines = (
        alt.Chart(agg)
        .mark_line(point=True)
        .encode(
            x=x,
            y=alt.Y("gc_mean:Q", title=y_title, scale=ys, axis=ya),
            color=color,
            strokeDash=alt.StrokeDash("activation:N", title="activation"),
            opacity=alt.condition(pick, alt.value(1.0), alt.value(0.15)),
            tooltip=[
                "init:N",
                "activation:N",
                "depth:Q",
                alt.Tooltip("gc_mean:Q", title="mean GC", format=".3g"),
                alt.Tooltip("gc_lo:Q", title="95% CI low", format=".3g"),
                alt.Tooltip("gc_hi:Q", title="95% CI high", format=".3g"),
                alt.Tooltip("n:Q", title="seeds"),
            ],
        )
    )
    bars = (
        alt.Chart(agg)
        .mark_errorbar()
        .encode(
            x=x,
            y=alt.Y("gc_lo:Q", title=y_title, scale=ys, axis=ya),
            y2="gc_hi:Q",
            color=color,
            opacity=alt.condition(pick, alt.value(0.8), alt.value(0.1)),
        )
    )
    dots = with_config(alt.Chart(pos).mark_circle(size=18), run_config(ctx.con, RUNS)).encode(
        x=x,
        y=alt.Y("gc:Q", title=y_title, scale=ys, axis=ya),
        color=color,
        opacity=alt.condition(pick, alt.value(0.45), alt.value(0.05)),
        tooltip=config_tooltip(alt.Tooltip("gc:Q", title="GC", format=".4g")),
    )
    return alt.layer(bars, dots, lines.add_params(pick)).properties(
        width=PANEL_W + 120, height=PANEL_H + 40, title="GC at initialization vs depth"
    )


def _family_slopes(ctx):
    """The per-family fig2 rows of `analysis.trends` (None without them)."""
    import polars as pl

    t = ctx.table("trends", "trends", ("heuristic", "slope", "slope_lo", "slope_hi", "verdict"))
    if t is None:
        return None
    t = t.filter((pl.col("experiment") == "fig2") & pl.col("slope").is_not_null())
    if t.is_empty():
        return None
    parts = pl.col("heuristic").str.extract_groups(r"^(?<claim>.*) \[(?<family>.*)\]$")
    return (
        t.with_columns(parts).unnest("heuristic").select("claim", "family", "slope", "slope_lo", "slope_hi", "verdict")
    )

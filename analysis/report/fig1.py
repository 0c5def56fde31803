"""Fig. 1: a wide MLP fitting 10 points on a parabola — the function at several steps, and
its arc length and GC over training."""

from __future__ import annotations

import altair as alt
import numpy as np
import polars as pl

from gclab.analysis.report.common import PANEL_H, PANEL_W, Figure, Section, collect_note, esc, log_scale, query

TITLE = "Fig. 1 — the learned function stays short"
MAX_SEEDS, N_STEPS_SHOWN, MAX_T = 5, 6, 101


def build(ctx) -> Section:
    sec = Section(
        id="fig1",
        title=TITLE,
        question="As a wide ReLU network fits 10 points by gradient descent, does its function grow "
        "in complexity only as needed, keeping its arc length near the minimal interpolant's?",
        claim_experiments=("fig1",),
    )
    if not ctx.has("fig1"):
        sec.empty_note = collect_note("fig1")
        return sec
    runs = "r.sweep = 'fig1' AND r.status = 'completed'"
    seeds = query(
        ctx.con,
        f"SELECT DISTINCT r.seed FROM runs r JOIN probes p ON p.run_id = r.run_id "
        f"WHERE {runs} ORDER BY r.seed LIMIT {MAX_SEEDS}",
    )["seed"].to_list()
    if seeds:
        steps = query(
            ctx.con,
            f"SELECT DISTINCT p.step FROM probes p JOIN runs r ON r.run_id = p.run_id WHERE {runs} ORDER BY p.step",
        )["step"].to_list()
        shown = _spread(steps, N_STEPS_SHOWN)
        # At most MAX_T points along t per curve: every k-th probe point, and always the last.
        curve = query(
            ctx.con,
            f"""
            WITH c AS (
                SELECT r.seed, p.step, p.t, avg(p.output) AS output
                FROM probes p JOIN runs r ON r.run_id = p.run_id
                WHERE {runs} AND p.output_index = 0 AND r.seed IN ({", ".join(map(str, seeds))})
                  AND p.step IN ({", ".join(map(str, shown))})
                GROUP BY ALL),
            n AS (SELECT *, row_number() OVER w - 1 AS i, count(*) OVER (PARTITION BY seed, step) AS m
                  FROM c WINDOW w AS (PARTITION BY seed, step ORDER BY t))
            SELECT seed, step, t, output FROM n
            WHERE i % greatest(1, ceil(m / {MAX_T})::BIGINT) = 0 OR i = m - 1
            ORDER BY seed, step, t""",
        )
        sec.figures.append(
            Figure(
                "fig1_function",
                _function_chart(curve, seeds, ctx),
                "The network's output on [−1, 1] at several training steps (darker = later) for "
                "the seed picked in the menu; black dots are the training points and the dotted "
                "black line the minimal interpolant (piecewise linear through them).",
            )
        )
    over = query(
        ctx.con,
        f"""
        WITH p AS (
            SELECT p.run_id, p.step, p.t, p.output,
                   lag(p.t) OVER w AS t0, lag(p.output) OVER w AS o0
            FROM probes p JOIN runs r ON r.run_id = p.run_id
            WHERE {runs} AND p.output_index = 0
            WINDOW w AS (PARTITION BY p.run_id, p.step ORDER BY p.t)),
        arc AS (SELECT run_id, step, sum(sqrt((t - t0) ^ 2 + (output - o0) ^ 2)) AS arc_length
                FROM p WHERE t0 IS NOT NULL GROUP BY run_id, step),
        gc AS (SELECT e.run_id, e.step, e.gc FROM evals e JOIN runs r ON r.run_id = e.run_id
               WHERE {runs} AND e.split = 'train')
        SELECT r.run_id, r.seed, coalesce(arc.step, gc.step) AS step, arc.arc_length, gc.gc
        FROM arc FULL JOIN gc ON arc.run_id = gc.run_id AND arc.step = gc.step
        JOIN runs r ON r.run_id = coalesce(arc.run_id, gc.run_id)
        ORDER BY r.seed, step""",
    )
    if over.height:
        sec.figures.append(
            Figure(
                "fig1_arclength_gc",
                _over_training(over, ctx),
                "Arc length of the probe curve (left) and train-set GC (right, log scale) at each "
                "evaluation; one line per seed. Grey dashed: arc length of the zero function (2), "
                "where the network starts; black: the minimal interpolant's arc length.",
            )
        )
    arc = ctx.table("fig1", "arc", ("run_id", "seed", "step", "train_mse", "ratio", "reached_fit"))
    if arc is not None:
        from gclab.analysis.fig1 import ARC_MARGIN, FIT_MSE

        rows = "".join(
            f"<tr><td>{esc(r['run_id'])}</td><td class=num>{r['seed']}</td><td class=num>{r['step']}</td>"
            f"<td class=num>{r['train_mse']:.3g}</td><td class=num>{r['ratio']:.4f}</td>"
            f"<td>{'yes' if r['reached_fit'] else 'no (lowest MSE)'}</td></tr>"
            for r in arc.to_dicts()
        )
        sec.html_blocks.append(
            f"<h3>Arc length at zero training error</h3><p class=note>Per run, at its first evaluation with train "
            f"MSE ≤ {FIT_MSE:g} (`analysis.fig1`); the verdict is a TOST of the mean ratio within "
            f"[{1 - ARC_MARGIN:g}, {1 + ARC_MARGIN:g}] (docs/EXPERIMENTS.md).</p><table class=ranking><thead><tr>"
            "<th>run</th><th>seed</th><th>step</th><th>train MSE</th><th>arc / minimal interpolant's</th>"
            f"<th>reached train MSE ≤ {FIT_MSE:g}</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    sec.caveats += [
        "Arc length is summed over the stored probe grid (a piecewise-linear approximation of ∫√(1+f′²)).",
        "GC is measured on the 10 training points (`evals.split = 'train'`), in eval mode.",
    ]
    return sec


def _spread(values: list, k: int) -> list:
    if len(values) <= k:
        return values
    idx = sorted({round(i * (len(values) - 1) / (k - 1)) for i in range(k)})
    return [values[i] for i in idx]


def _training_points(ctx) -> pl.DataFrame | None:
    """The parabola dataset's training points (deterministic: n_train evenly spaced x on [−1, 1], y = x²,
    as collect/datasets.py makes them); None for another dataset or mixed sizes."""
    df = query(
        ctx.con, "SELECT DISTINCT r.dataset, r.n_train FROM runs r WHERE r.sweep = 'fig1' AND r.status = 'completed'"
    )
    if df.height != 1 or df["dataset"][0] != "parabola" or not (df["n_train"][0] or 0) >= 2:
        return None
    x = np.linspace(-1.0, 1.0, int(df["n_train"][0]))
    return pl.DataFrame({"x": x, "y": x**2})


def _arc_min(points: pl.DataFrame | None) -> float | None:
    """Arc length of the minimal interpolant: the piecewise-linear curve through the points."""
    if points is None:
        return None
    x, y = points["x"].to_numpy(), points["y"].to_numpy()
    return float(np.sqrt(np.diff(x) ** 2 + np.diff(y) ** 2).sum())


def _function_chart(curve: pl.DataFrame, seeds: list, ctx):
    pick = alt.param(name="fig1_seed", value=seeds[0], bind=alt.binding_select(options=seeds, name="seed "))
    lines = (
        alt.Chart(curve)
        .transform_filter(alt.datum.seed == pick)
        .mark_line(strokeWidth=1.6)
        .encode(
            x=alt.X("t:Q", title="input x", scale=alt.Scale(domain=[-1, 1])),
            y=alt.Y("output:Q", title="network output f(x)"),
            color=alt.Color(
                "step:O", title="training step", scale=alt.Scale(scheme={"name": "blues", "extent": [0.3, 1.0]})
            ),
            tooltip=[
                "seed:Q",
                "step:Q",
                alt.Tooltip("t:Q", title="x", format=".3f"),
                alt.Tooltip("output:Q", format=".4f"),
            ],
        )
    )
    layers = [lines]
    pts = _training_points(ctx)
    if pts is not None:
        layers.append(
            alt.Chart(pts).mark_line(color="black", strokeDash=[2, 3], strokeWidth=1).encode(x="x:Q", y="y:Q")
        )
        layers.append(
            alt.Chart(pts)
            .mark_point(color="black", filled=True, size=45, opacity=1)
            .encode(x="x:Q", y="y:Q", tooltip=[alt.Tooltip("x:Q", format=".3f"), alt.Tooltip("y:Q", format=".3f")])
        )
    return (
        alt.layer(*layers)
        .add_params(pick)
        .properties(width=PANEL_W + 80, height=PANEL_H + 40, title="Function at several training steps")
    )


def _over_training(over: pl.DataFrame, ctx):
    base = alt.Chart(over).encode(
        x=alt.X("step:Q", title="optimizer step"),
        color=alt.Color("seed:N", title="seed"),
        tooltip=[
            alt.Tooltip("run_id:N", title="run"),
            "seed:Q",
            "step:Q",
            alt.Tooltip("arc_length:Q", title="arc length", format=".4f"),
            alt.Tooltip("gc:Q", title="GC", format=".4g"),
        ],
    )
    dots = over["step"].n_unique() <= 30  # markers only while they stay readable
    arc = (
        base.transform_filter("isValid(datum.arc_length)")
        .mark_line(point=dots)
        .encode(y=alt.Y("arc_length:Q", title="arc length of f on [−1, 1]", scale=alt.Scale(zero=False)))
    )
    refs = pl.DataFrame({"y": [2.0], "label": ["zero function"], "color": ["gray"]})
    arc_min = _arc_min(_training_points(ctx))
    if arc_min is not None:
        refs = pl.concat([refs, pl.DataFrame({"y": [arc_min], "label": ["minimal interpolant"], "color": ["black"]})])
    rules = alt.Chart(refs).mark_rule(strokeDash=[4, 3]).encode(y="y:Q", color=alt.Color("color:N", scale=None))
    labels = (
        alt.Chart(refs)
        .mark_text(align="left", dx=4, dy=-6, fontSize=10)
        .encode(y="y:Q", x=alt.value(0), text="label:N", color=alt.Color("color:N", scale=None))
    )
    layers = [arc, rules, labels]
    gs, ga = log_scale(over["gc"])
    gc = (
        base.transform_filter("isValid(datum.gc) && datum.gc > 0")
        .mark_line(point=dots)
        .encode(y=alt.Y("gc:Q", title="GC on the training points (log)", scale=gs, axis=ga))
    )
    return alt.hconcat(
        alt.layer(*layers).properties(width=PANEL_W, height=PANEL_H, title="Arc length over training"),
        gc.properties(width=PANEL_W, height=PANEL_H, title="GC over training"),
    )

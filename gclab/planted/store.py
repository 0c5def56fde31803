"""Planted run stores: the shipped sweeps' runs with hand-made effects, in the real store layout.

The runs come from `gclab/collect/sweeps/*.toml` through `collect.sweep.load_sweep`, so a planted
store has exactly the grids, names, seeds and `runs` columns that collection writes; only the
end-of-training values are planted (see `EFFECTS`, docs/EXPERIMENTS.md "Verdicts"). Each
effect is signed: its default is in the paper's direction, 0 plants no effect (a null), a
negative value plants the effect against the paper.

`write_planted_store(data_dir)` writes Parquet through `store.layout.RunFolder`;
`planted_connection()` loads the same tables into an in-memory DuckDB (what `make calibrate`
uses: the analysis SQL and statistics run unchanged, without writing thousands of files).
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from collections.abc import Iterable

import duckdb
import numpy as np
import pyarrow as pa

from gclab.analysis.igr import SWEEPS as IGR_SWEEPS
from gclab.collect.config import RunConfig
from gclab.collect.datasets import SHAPES
from gclab.collect.sweep import load_sweep
from gclab.planted.noise import MEASURED
from gclab.planted.tables import (
    Plant,
    diagonal_probes,
    evals_table,
    fdim_table,
    parabola_probes,
    parabola_train_mse,
    steps_table,
    theorem_tables,
)
from gclab.store.layout import RunFolder, to_arrow
from gclab.store.schema import MARKER_TABLE, SCHEMAS
from gclab.store.sweeps import DEMO, FIG4_SWEEPS, PAPER_SCALE_ONLY, PAPER_SWEEPS, TREND_SWEEPS

EFFECTS: dict = {
    "trend_slope": 1.0,  # Δ log GC across each regularizer's grid, in the paper's direction
    "acc_slope": 0.05,  # test-acc gain across the lr (fig4) and gc_reg grids, and loss across the batch grid
    "seed_noise": None,  # sd of log GC between runs; None: each sweep's measured sd (planted.noise.MEASURED)
    "acc_noise": None,  # sd of test accuracy between runs; None: likewise measured
    "output_noise": None,  # fig2: sd of log |output| at init between runs; None: likewise measured
    "seed_offset": 0.2,  # sd of a per-seed shift of log GC shared by a sweep's runs (a block effect)
    "output_shrink": 2.0,  # fig2: Δ log |output| from the shallowest to the deepest net
    "fig1_ripple": 0.01,  # fig1: amplitude of a wiggle on top of the minimal interpolant
    "fig1_gc_start": 0.001,  # fig1: GC at step 0 as a fraction of the final GC
    "fig1_fit": 1.0,  # fig1: 1 fits the interpolant; 0 the least-squares line (× fig1_line)
    "fig1_line": 1.0,  # fig1: with fig1_fit = 0, 1 is the straight-line fit and 0 the zero function
    "fig5_peak": 1.0,  # fig5: GC = profile^fig5_peak; 1 peaks at the threshold, −1 dips, 0 flat
    "u_curvature": 0.4,  # fig5: test loss = 1 + u (GC − 1)²; < 0 an inverted U
    "fig5_noise": 0.05,  # fig5: sd of test loss between runs
    "fig5_noise_ratio": 1.0,  # fig5: × that sd from the interpolation threshold up (the two U arms' noise differs)
    "thm_slope_T": -0.3,  # thm51: Δ log Σ T² over training
    "thm_slope_grad": -1.5,  # thm51: Δ log ||∇θ f||² over training
    "thm_violations": 0,  # thm51: planted rows with gc_x > bound_tight (per run)
    "igr_slope": -0.3,  # igr: d log GC / d log(h/b) on the lr × batch grid of analysis.igr.SWEEPS (fig4 and igr)
    "igr_b_extra": 0.0,  # igr: extra d log GC / d log b (≠ 0: lr and batch no longer act only through h/b)
    "eq6_breaks": 0,  # igr: rows of the first fig4/igr run whose grad_norm_sq breaks Eq. 6
    "bfd_drop": 0.3,  # bfd: fraction of bfd_max lost over training (train/test)
    "bfd_random_gap": 0.08,  # bfd: random-input bfd above train/test at init, as a fraction of bfd_max
    "ffd_deficit": 0.0,  # bfd: computable full functional dimension below the ceiling, fraction of it
    "measure_corr": 1.0,  # gap = 0.3 + 0.2 measure_corr log GC + noise
    "diverged": 1,  # fig4: runs at the largest lr that diverge (first seeds)
    "unfitted": 0,  # runs per trained-to-target sweep that stop at the cap short of it (first seed)
    "family_flip": 1.0,  # fig2: sign of the depth effects of FAILING_FAMILY (−1: it fails the claim)
}
# fig2's family that `family_flip` plants against the others (docs/EXPERIMENTS.md): He-normal + tanh rises.
FAILING_FAMILY = ("he_normal", "tanh")
# The paper's direction of GC along each hyperparameter (Dherin et al. 2022, "Why neural networks find simple
# solutions: the many regularizers of geometric complexity", §3–5); other axes plant nothing.
GC_DIRECTION = {
    "l2": -1,
    "spectral_reg": -1,
    "flatness_reg": -1,
    "label_noise": -1,
    "step_label_noise": -1,
    "gc_reg": -1,
    "lr": -1,
    "batch_size": +1,
    "depth": -1,
}
SWEEPS = (*PAPER_SWEEPS, DEMO)
# Where no store measured it (fig1, fig5, thm51, bfd, demo): the declared assumption of issue 21's first round.
ASSUMED_NOISE = {"seed_noise": 0.1, "acc_noise": 0.01, "output_noise": 0.1}


def noise(fx: dict, sweep: str, knob: str) -> float:
    """The sd `knob` (a key of ASSUMED_NOISE) planted in `sweep`: the effect's value when one is given,
    else the sweep's measured sd (planted.noise.MEASURED), else ASSUMED_NOISE."""
    if fx[knob] is not None:
        return fx[knob]
    return MEASURED.get(sweep, {}).get(knob, ASSUMED_NOISE[knob])


def sweep_runs(sweep: str, *, seeds: int | None = None, cadence: dict | None = None) -> tuple[RunConfig, ...]:
    """The shipped sweep's run configs; `seeds` replaces its seed list by range(seeds), `cadence`
    (steps/log_every/eval_every) shortens training runs (init-only sweeps keep steps = 0). A sweep collected
    at the [paper] scale only (`store.sweeps.PAPER_SCALE_ONLY`) keeps its CPU grid with that scale's seeds:
    the seeds a real store of it holds."""
    return _sweep_runs(sweep, seeds, tuple(sorted((cadence or {}).items())))


@functools.lru_cache(maxsize=256)
def _sweep_runs(sweep: str, seeds: int | None, cadence: tuple) -> tuple[RunConfig, ...]:
    overrides = {"seeds": list(range(seeds))} if seeds is not None else {}
    if seeds is None and sweep in PAPER_SCALE_ONLY:
        overrides["seeds"] = sorted({r.seed for r in load_sweep(sweep, scale="paper").runs})
    # `demo` is no sweep file (gclab/collect/sweep.py expands it); its stand-in: thm51's demo scale named demo.
    name, scale = ("thm51", DEMO) if sweep == DEMO else (sweep, "cpu")
    if sweep == DEMO:
        overrides["sweep"] = DEMO
    # Planted runs train nothing: the guard against huge sweeps (MAX_RUNS) does not apply (the store bench plants 10⁵).
    runs = load_sweep(name, scale=scale, overrides=overrides, allow_huge=True).runs
    if cadence and any(r.steps > 0 for r in runs):
        runs = load_sweep(name, scale=scale, overrides={**overrides, **dict(cadence)}, allow_huge=True).runs
    return tuple(runs)


def positions(runs: list[RunConfig]) -> dict[str, dict]:
    """Per GC_DIRECTION axis that varies in `runs`: value → position on its sorted grid in [0, 1]."""
    out = {}
    for axis in GC_DIRECTION:
        values = sorted({getattr(r, axis) for r in runs})
        if len(values) > 1:
            out[axis] = {v: i / (len(values) - 1) for i, v in enumerate(values)}
    return out


def shape_of(cfg: RunConfig) -> tuple[int, int, int, int]:
    d, k, n_train, n_test = SHAPES[cfg.dataset]
    if cfg.dataset == "teacher":
        d, k = cfg.input_dim or d, cfg.n_classes or k
    return d, k, cfg.n_train or n_train, cfg.n_test or n_test


def n_params(cfg: RunConfig) -> int:
    d, k, _, _ = shape_of(cfg)
    w, depth, b = cfg.width, cfg.depth, int(cfg.bias)
    return d * w + b * w + max(depth - 1, 0) * (w * w + b * w) + w * k + b * k


def bfd_ceiling(cfg: RunConfig, b: int) -> int:
    """The BFD ceiling at b inputs (docs/EXPERIMENTS.md bfd): logits min(b·k, P − H), softmax
    min(b·(k−1), P − H − (width + 1)); H = hidden ReLU units (width × depth)."""
    _, k, _, _ = shape_of(cfg)
    free = n_params(cfg) - (cfg.width * cfg.depth if cfg.activation == "relu" else 0)
    if cfg.bfd_output == "logits":
        return min(b * k, free)
    return min(b * (k - 1), free - cfg.width - int(cfg.bias))


def _fig5(cfg: RunConfig, widths: list[int], fx: dict, rng, offset: float) -> Plant:
    """GC = profile^fig5_peak (the profile peaks at the interior interpolation threshold) and
    test loss = 1 + u (GC − 1)²: double descent in width and a U in GC at the defaults. The profile
    spans 30× (fig5_peak = 2: 900×, three decades); widths from the threshold up, the high-GC arm,
    have fig5_noise_ratio × the test-loss noise of the others (a heteroscedastic null at u = 0)."""
    i, n = widths.index(cfg.width), len(widths)
    p = (n - 1) // 2
    train_acc = 1.0 if i >= p else 1.0 - 0.3 * (1 - i / p)
    profile = 0.1 + 2.9 * (i / p) ** 2 if i <= p else 1.2 + 1.8 * math.exp(-(i - p) / 1.5)
    g = profile ** fx["fig5_peak"] * math.exp(noise(fx, "fig5", "seed_noise") * rng.standard_normal() + offset)
    loss_sd = fx["fig5_noise"] * (fx["fig5_noise_ratio"] if i >= p else 1.0)
    tl = 1.0 + fx["u_curvature"] * (g - 1.0) ** 2 + loss_sd * rng.standard_normal()
    trl = 0.02 + 0.5 * (1 - train_acc)
    return Plant(g, tl, trl, max(0.0, 0.85 - 0.2 * (tl - 1.0)), train_acc, math.log(g))


def family_sign(cfg: RunConfig, fx: dict) -> float:
    """Sign (and size) of fig2's depth effects for this run's init/activation family."""
    return fx["family_flip"] if (cfg.init, cfg.activation) == FAILING_FAMILY else 1.0


def _plant(cfg: RunConfig, pos: dict, fx: dict, rng, offset: float, context: dict, unfitted: bool) -> Plant:
    sweep = cfg.sweep
    if sweep == "fig5":  # no seed block: its tests compare widths, not seeds within a width
        return _fig5(cfg, context["widths"], fx, rng, 0.0)
    lg = offset + noise(fx, sweep, "seed_noise") * rng.standard_normal()
    if sweep in TREND_SWEEPS or sweep in IGR_SWEEPS:  # igr's corners: fig4's axes, positions on the joint grid
        lg += sum(
            GC_DIRECTION[a] * fx["trend_slope"] * grid[getattr(cfg, a)] * (family_sign(cfg, fx) if a == "depth" else 1)
            for a, grid in pos.items()
        )
    if sweep in IGR_SWEEPS:  # one lr × batch grid (docs/EXPERIMENTS.md, igr): one planted surface over it
        lg += fx["igr_slope"] * (math.log(cfg.lr / cfg.batch_size) - context["log_hb_mid"])
        lg += fx["igr_b_extra"] * (math.log(cfg.batch_size) - context["log_b_mid"])
    trl = 0.05 + 0.02 * abs(rng.standard_normal())
    gap = 0.3 + 0.2 * fx["measure_corr"] * lg + 0.03 * rng.standard_normal()
    acc = 0.8 + noise(fx, sweep, "acc_noise") * rng.standard_normal()
    acc_axis = {**dict.fromkeys(FIG4_SWEEPS, "lr"), "gcreg": "gc_reg"}.get(sweep)
    if acc_axis in pos:
        acc += fx["acc_slope"] * pos[acc_axis][getattr(cfg, acc_axis)]
    if sweep in FIG4_SWEEPS and "batch_size" in pos:  # smaller batches, higher test accuracy (GC paper §5)
        acc -= fx["acc_slope"] * pos["batch_size"][cfg.batch_size]
    if cfg.loss == "mse":
        if cfg.dataset == "parabola":  # the train MSE of the planted function, as fig1 measures it
            trl = 1e-4 + parabola_train_mse(context["n_train"], fx["fig1_fit"], fx["fig1_line"], fx["fig1_ripple"])
        return Plant(math.exp(lg), trl + max(gap, 0.01), trl, math.nan, math.nan, lg, fx["fig1_gc_start"])
    if unfitted:  # stopped at the cap far from fitting: low GC, high loss (the confound the filter removes)
        return Plant(math.exp(lg - 3.0), 1.5, 1.2, 0.4, 0.45, lg - 3.0)
    fitted = cfg.stop_at_train_error is not None  # trained to zero training error
    return Plant(math.exp(lg), trl + max(gap, 0.05), trl, min(acc, 0.99), 1.0 if fitted else 0.99, lg)


@functools.lru_cache(maxsize=4096)
def _static(cfg: RunConfig) -> tuple[dict, dict, int]:
    """(table columns of the config, its `runs` row, n_params): the same for every planted store."""
    d, k, n_train, n_test = shape_of(cfg)
    return {**cfg.model_dump(), "n_train": n_train, "n_test": n_test}, cfg.runs_row(), n_params(cfg)


def _target_columns(cfg: RunConfig, plant: Plant, done: int, reached: bool) -> dict:
    """The runs columns of the stop rule (gclab/collect/target.py), consistent with the planted fit."""
    active = cfg.stop_at_train_error is not None or cfg.stop_at_train_loss is not None
    return {
        "target_reached": reached if active else None,
        "target_step": done if active and reached else None,
        "final_train_error": 1.0 - plant.train_acc,
        "final_train_loss": plant.train_loss,
    }


def _run_tables(
    cfg: RunConfig,
    job: int,
    *,
    rng_seed: int,
    fx: dict,
    pos: dict,
    context: dict,
    offsets: dict,
    diverged: bool,
    break_eq6: bool,
    tables: frozenset,
    unfitted: bool = False,
) -> dict[str, dict]:
    """The tables of one run (those in `tables`) as columns, the `runs` row last (as collection writes them)."""
    rng = np.random.default_rng([rng_seed, job])
    cols, row, n_par = _static(cfg)
    run_id = row["run_id"]
    done = max(cfg.steps // 3, 1) if diverged else cfg.steps
    plant = _plant(cfg, pos, fx, rng, offsets[cfg.seed], context, unfitted)
    if diverged:  # loss blew up: huge losses, chance accuracy
        plant = Plant(plant.gc * 50, 40.0, 30.0, 0.1, 0.1, plant.measure_z + 3)
    d, k, n_train, n_test = shape_of(cfg)
    out = (
        {
            "steps": steps_table(
                rng, run_id, plant, cols, done, cfg.log_every, eq6_break_rows=fx["eq6_breaks"] if break_eq6 else 0
            )
        }
        if "steps" in tables
        else {}
    )
    bfd_max = bfd_ceiling(cfg, max(cfg.bfd_batch, 1))
    out["evals"] = evals_table(rng, run_id, plant, cols, done, cfg.eval_every, fx, bfd_max)
    if cfg.bfd_batch and cfg.sweep == "bfd" and "fdim" in tables:  # analysis reads fdim of the bfd sweep only
        out["fdim"] = fdim_table(
            rng,
            run_id,
            out["evals"],
            cfg.bfd_output,
            cfg.bfd_batch,
            cfg.bfd_random_batches,
            lambda b: bfd_ceiling(cfg, b),
        )
    if cfg.theorem_examples and cfg.model == "mlp" and "theorem" in tables:
        out["theorem"], out["layers"] = theorem_tables(
            rng, run_id, cols, done, cfg.eval_every, fx, d, k, n_examples=min(cfg.theorem_examples, 8)
        )
    if not cfg.probe_points or "probes" not in tables:
        pass
    elif cfg.dataset == "parabola":
        out["probes"] = parabola_probes(
            rng, run_id, done, cfg.eval_every, n_train, fx["fig1_ripple"], fx["fig1_fit"], fx["fig1_line"]
        )
    else:
        depth_pos = pos.get("depth", {}).get(cfg.depth, 0.0)
        shrink = -fx["output_shrink"] * family_sign(cfg, fx) * depth_pos
        amp = 2.0 * math.exp(shrink + noise(fx, cfg.sweep, "output_noise") * rng.standard_normal())
        out["probes"] = diagonal_probes(rng, run_id, amp)
    test_acc = out["evals"]["acc"][out["evals"]["split"] == "test"]
    out[MARKER_TABLE] = {
        k: [v]
        for k, v in {
            **row,
            "status": "diverged" if diverged else "completed",
            "n_params": n_par,
            "device": "cpu",
            "wall_s": 0.01 * done,
            "steps_done": done,
            "n_train": n_train,
            "n_test": n_test,
            "best_test_acc": None if np.isnan(test_acc).all() else float(np.nanmax(test_acc)),
            "error": f"loss became non-finite at step {done}" if diverged else None,
            "gclab_version": "planted",
            **_target_columns(cfg, plant, done, not (diverged or unfitted)),
        }.items()
    }
    return out


def planted_runs(
    *,
    sweeps: Iterable[str] = PAPER_SWEEPS,
    seeds: int | None = None,
    cadence: dict | None = None,
    rng_seed: int = 0,
    effects: dict | None = None,
    n_runs: int | None = None,
    runs_scale: int = 1,
    tables: Iterable[str] = tuple(SCHEMAS),
) -> Iterable[tuple[RunConfig, dict[str, dict]]]:
    """(config, tables) of every run of `sweeps` with `effects` planted (see the module docstring).

    `seeds`: seeds per configuration (default: the sweep's own); `runs_scale` multiplies them;
    `n_runs` writes exactly that many runs, seed-major, so truncation drops seeds, never a sweep.
    `tables` limits the tables built (runs and evals always are): calibration skips what a test never reads.
    """
    tables = frozenset(tables)
    unknown = set(effects or {}) - set(EFFECTS)
    if unknown:
        raise KeyError(f"unknown planted effects {sorted(unknown)}; valid: {', '.join(EFFECTS)}")
    fx = {**EFFECTS, **(effects or {})}
    if n_runs is not None:  # enough seeds for n_runs, then seed-major truncation
        seeds = max(1, math.ceil(n_runs / max(sum(len(sweep_runs(s, seeds=1)) for s in sweeps), 1)))
    if runs_scale != 1:
        per_sweep = {s: (seeds or len({r.seed for r in sweep_runs(s)})) * runs_scale for s in sweeps}
    else:
        per_sweep = dict.fromkeys(sweeps, seeds)
    by_sweep = {s: sweep_runs(s, seeds=per_sweep[s], cadence=cadence) for s in sweeps}
    jobs = sorted((r for runs in by_sweep.values() for r in runs), key=lambda r: r.seed)  # stable: sweep order kept
    jobs = jobs[:n_runs] if n_runs is not None else jobs
    # analysis.igr reads fig4's and igr's runs as one design: grid positions, centres and seed shifts over both
    joint = {
        s: [r for t in IGR_SWEEPS for r in by_sweep.get(t, ())] if s in IGR_SWEEPS else by_sweep[s] for s in by_sweep
    }
    pos = {s: positions(runs) for s, runs in joint.items()}
    context = {
        s: {
            "widths": sorted({r.width for r in runs}),
            "n_train": shape_of(runs[0])[2],
            "log_hb_mid": float(np.median([math.log(r.lr / r.batch_size) for r in runs])),
            "log_b_mid": float(np.median([math.log(r.batch_size) for r in runs])),
        }
        for s, runs in joint.items()
    }
    offsets = {
        s: dict(
            zip(
                sorted({r.seed for r in runs}),
                fx["seed_offset"]
                * np.random.default_rng([rng_seed, 7919, i]).standard_normal(len({r.seed for r in runs})),
            )
        )
        for i, (s, runs) in enumerate(joint.items())
    }
    lead = next((s for s in by_sweep if s in IGR_SWEEPS), None)
    offsets = {s: offsets[lead] if s in IGR_SWEEPS and lead else o for s, o in offsets.items()}
    top_lr = {s: max(r.lr for r in runs) for s, runs in by_sweep.items()}
    n_diverged, n_unfitted = defaultdict(int), defaultdict(int)
    first_igr = next((j for j, r in enumerate(jobs) if r.sweep in IGR_SWEEPS), None)
    for j, cfg in enumerate(jobs):
        diverged = cfg.sweep == "fig4" and cfg.lr == top_lr["fig4"] and n_diverged["fig4"] < fx["diverged"]
        n_diverged[cfg.sweep] += diverged
        unfitted = not diverged and cfg.stop_at_train_error is not None and n_unfitted[cfg.sweep] < fx["unfitted"]
        n_unfitted[cfg.sweep] += unfitted
        yield (
            cfg,
            _run_tables(
                cfg,
                j,
                rng_seed=rng_seed,
                fx=fx,
                pos=pos[cfg.sweep],
                context=context[cfg.sweep],
                offsets=offsets[cfg.sweep],
                diverged=diverged,
                break_eq6=(j == first_igr),
                tables=tables,
                unfitted=unfitted,
            ),
        )


def write_planted_store(data_dir, **kw) -> None:
    """Write a planted store under `data_dir` through RunFolder (arguments: `planted_runs`)."""
    for cfg, tables in planted_runs(**kw):
        folder = RunFolder(data_dir, cfg.sweep, cfg.run_id)
        folder.start()
        for name, cols in tables.items():
            if name != MARKER_TABLE:
                folder.write(name, cols)
        folder.finish({k: v[0] for k, v in tables[MARKER_TABLE].items()})


def planted_connection(**kw) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB whose tables hold a planted store, as the store views would show it
    (hive partitioning adds `sweep` to every table; arguments: `planted_runs`)."""
    parts: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for cfg, tables in planted_runs(**kw):
        for name, cols in tables.items():
            for c, v in cols.items():
                parts[name][c].append(v)
            if name != MARKER_TABLE:
                parts[name]["sweep"].append(np.full(len(cols["run_id"]), cfg.sweep, dtype=object))
    con = duckdb.connect()
    for name, schema in SCHEMAS.items():
        cols = (
            {c: np.concatenate(v) for c, v in parts[name].items() if c != "sweep" or name == MARKER_TABLE}
            if name in parts
            else {}
        )
        frame = to_arrow(name, cols) if cols else schema.empty_table()
        if name != MARKER_TABLE:
            sweep = np.concatenate(parts[name]["sweep"]) if name in parts else np.array([], dtype=object)
            frame = frame.append_column("sweep", pa.array(sweep, pa.string()))
        con.register(f"_{name}", frame)
        con.sql(f"CREATE TABLE {name} AS SELECT * FROM _{name}")
        con.unregister(f"_{name}")
    return con

"""A realistic synthetic run store with the paper's effects planted, written by the real writer.

`write_synthetic_store(data_dir)` lays out every sweep of docs/EXPERIMENTS.md through
`store.layout.RunFolder`, so tests, the report renderer and `make bench` read exactly what
collection writes. Effects are planted on each run's end-of-training values (see `EFFECTS`);
override them to plant nulls, e.g. `effects={"trend_slope": 0.0}` or `{"fig5_peak": False}`.
"""
from __future__ import annotations

import json
import math
from typing import Iterable

import numpy as np

from store.layout import RunFolder, run_id_of
from store.synthetic_tables import (Plant, diagonal_probes, evals_table, parabola_probes,
                                    steps_table, theorem_tables)

EFFECTS: dict = {
    "trend_slope": 1.0,       # |Δ log GC| across each heuristic's grid, in the paper's direction
    "acc_slope": 0.05,        # test-acc gain across the lr and gc_reg grids
    "seed_noise": 0.1,        # sd of log GC between seeds
    "output_shrink": 2.0,     # fig2: Δ log |output| from the shallowest to the deepest net
    "fig1_ripple": 0.01,      # fig1: amplitude of a wiggle on top of the minimal interpolant
    "fig1_gc_start": 0.001,   # fig1: GC at step 0 as a fraction of the final GC
    "fig5_peak": True,        # fig5: double descent in width (False: monotone curves)
    "fig5_flat": False,       # fig5: GC and test loss flat in width (a null for both fig5 tests)
    "u_curvature": 0.4,       # fig5: test loss = 1 + u (GC - 1)^2 across widths
    "fig5_noise": 0.05,       # fig5: sd of test loss between seeds
    "thm_slope_T": -0.3,      # thm51: Δ log Σ T² over training
    "thm_slope_grad": -1.5,   # thm51: Δ log ||∇θ f||² over training
    "thm_violations": 0,      # thm51: planted rows with gc_x > bound_tight (per run)
    "igr_slope": -0.3,        # igr: d log GC / d log(h/b)
    "eq6_breaks": 0,          # igr: rows of the first run whose grad_norm_sq breaks Eq. 6
    "bfd_drop": 0.3,          # bfd: fraction of bfd_max lost over training (train/test)
    "bfd_random_gap": 0.08,   # bfd: random-input bfd above train/test, as a fraction of bfd_max
    "measure_corr": 1.0,      # gap = 0.3 + 0.2 measure_corr log GC + noise
}

BASE = dict(dataset="mnist1d", model="mlp", width=100, depth=2, activation="relu", init="he",
            optimizer="sgd", lr=0.05, momentum=0.0, batch_size=64, l2=0.0, spectral_reg=0.0,
            flatness_reg=0.0, gc_reg=0.0, label_noise=0.0, bias=True, init_scale=1.0,
            loss="cross_entropy", n_train=4000, n_test=1000)
D_IN = {"mnist1d": 40, "digits": 64, "parabola": 1, "mnist": 784}
FIG3 = {"l2": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2], "spectral_reg": [1e-3, 3e-3, 1e-2, 3e-2, 1e-1],
        "flatness_reg": [1e-3, 3e-3, 1e-2, 3e-2, 1e-1], "label_noise": [0.05, 0.1, 0.2, 0.3, 0.4]}
LRS, BATCHES = [0.01, 0.02, 0.05, 0.1, 0.2], [16, 32, 64, 128, 256]
DEPTHS = [1, 2, 4, 6, 8, 12, 16]
GC_REGS = [0.0, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]
FIG5_WIDTHS = sorted({int(round(w)) for w in np.geomspace(2, 300, 12)})
DIVERGED_LR = 1.0
SWEEPS = ("fig1", "fig2", "fig3", "fig4", "fig4_momentum", "fig4_adam", "fig5", "gcreg",
          "thm51", "igr", "bfd", "demo")


def _fig4(optimizer: str, momentum: float) -> list[dict]:
    grid = {(lr, 64) for lr in LRS} | {(0.05, b) for b in BATCHES} | {(DIVERGED_LR, 64)}
    return [dict(lr=lr, batch_size=b, optimizer=optimizer, momentum=momentum) for lr, b in sorted(grid)]


def grid(sweep: str) -> list[dict]:
    """The configurations (runs columns beyond BASE) of one sweep, without seeds."""
    if sweep == "fig1":
        return [dict(dataset="parabola", loss="mse", width=256, depth=1, batch_size=10, n_train=10,
                     n_test=200, lr=0.01)]
    if sweep == "fig2":
        return [dict(dataset="mnist", depth=d, init=i, activation=a, width=500, n_train=60000, n_test=10000)
                for d in DEPTHS for i in ("he", "glorot") for a in ("relu", "tanh")]
    if sweep == "fig3":
        return [{}] + [{reg: s} for reg, grid_ in FIG3.items() for s in grid_]
    if sweep == "fig4":
        return _fig4("sgd", 0.0)
    if sweep in ("fig4_momentum", "fig4_adam"):
        return _fig4(sweep.removeprefix("fig4_"), 0.9)
    if sweep == "fig5":
        return [dict(width=w, label_noise=0.15) for w in FIG5_WIDTHS]
    if sweep == "gcreg":
        return [dict(gc_reg=a) for a in GC_REGS]
    if sweep == "thm51":
        return [dict(depth=d, width=w) for d in (1, 2, 3) for w in (16, 64)] + [dict(depth=2, width=16, bias=False)]
    if sweep == "igr":
        return [dict(lr=lr, batch_size=b) for lr in (0.02, 0.05, 0.1, 0.2) for b in (16, 64, 256)]
    if sweep == "bfd":
        return [dict(dataset=ds, width=30, depth=3) for ds in ("mnist1d", "digits")]
    if sweep == "demo":
        return [dict(lr=lr) for lr in (0.05, 0.2)]
    raise KeyError(f"unknown synthetic sweep {sweep!r}; valid: {', '.join(SWEEPS)}")


def _pos(value, values) -> float:
    """Position of `value` on its grid, scaled to [0, 1]."""
    values = sorted(values)
    return values.index(value) / max(len(values) - 1, 1)


def _log_gc(sweep: str, cfg: dict, fx: dict) -> float:
    """Planted log GC of a configuration (before seed noise): the paper's directions."""
    ts = fx["trend_slope"]
    if sweep == "fig2":
        return math.log(5.0) - ts * _pos(cfg["depth"], DEPTHS)
    if sweep == "fig3":
        reg = next((r for r in FIG3 if cfg.get(r, 0) > 0), None)
        return 0.0 if reg is None else -ts * _pos(cfg[reg], [0.0] + FIG3[reg])
    if sweep.startswith("fig4"):
        return -ts * _pos(cfg["lr"], LRS + [DIVERGED_LR]) * 1.25 + ts * _pos(cfg["batch_size"], BATCHES)
    if sweep == "gcreg":
        return -ts * _pos(cfg["gc_reg"], GC_REGS)
    if sweep == "igr":
        return fx["igr_slope"] * (math.log(cfg["lr"] / cfg["batch_size"]) - math.log(0.05 / 64))
    return 0.0


def _fig5(cfg: dict, fx: dict, rng) -> tuple[float, float, float]:
    """(GC, test loss, train acc) of a fig5 run: GC peaks at the interpolation threshold and
    test loss = 1 + u (GC − 1)², so test loss double-descends in width and is U-shaped in GC."""
    i, n = FIG5_WIDTHS.index(cfg["width"]), len(FIG5_WIDTHS)
    p = (n - 1) // 2  # interior interpolation threshold
    train_acc = 1.0 if i >= p else 1.0 - 0.3 * (1 - i / p)
    if fx["fig5_flat"]:
        g = 1.0
    elif fx["fig5_peak"]:
        g = 0.1 + 2.9 * (i / p) ** 2 if i <= p else 1.2 + 1.8 * math.exp(-(i - p) / 1.5)
    else:
        g = 2.0 * math.exp(-i / n)
    g *= math.exp(fx["seed_noise"] * rng.standard_normal())
    shape = (0.0 if fx["fig5_flat"] else fx["u_curvature"] * (g - 1.0) ** 2 if fx["fig5_peak"]
             else 0.3 * (g - 1.0))
    return g, 1.0 + shape + fx["fig5_noise"] * rng.standard_normal(), train_acc


def _plant(sweep: str, cfg: dict, fx: dict, rng) -> Plant:
    classif = cfg["loss"] != "mse"
    if sweep == "fig5":
        g, tl, tra = _fig5(cfg, fx, rng)
        trl = 0.02 + 0.5 * (1 - tra)
        return Plant(g, tl, trl, max(0.0, 0.85 - 0.2 * (tl - 1.0)), tra, math.log(g))
    lg = _log_gc(sweep, cfg, fx) + fx["seed_noise"] * rng.standard_normal()
    trl = 0.05 + 0.02 * abs(rng.standard_normal())
    gap = 0.3 + 0.2 * fx["measure_corr"] * lg + 0.03 * rng.standard_normal()
    acc = 0.8 + 0.01 * rng.standard_normal()
    if sweep.startswith("fig4"):
        acc += fx["acc_slope"] * _pos(cfg["lr"], LRS + [DIVERGED_LR])
    if sweep == "gcreg":
        acc += fx["acc_slope"] * _pos(cfg["gc_reg"], GC_REGS)
    if not classif:
        return Plant(math.exp(lg), trl + max(gap, 0.01), trl, math.nan, math.nan, lg, fx["fig1_gc_start"])
    return Plant(math.exp(lg), trl + max(gap, 0.05), trl, min(acc, 0.99), 0.99, lg)


def n_params(cfg: dict) -> int:
    d, w, depth = D_IN[cfg["dataset"]], cfg["width"], cfg["depth"]
    k, b = (1 if cfg["dataset"] == "parabola" else 10), int(cfg["bias"])
    return d * w + b * w + (depth - 1) * (w * w + b * w) + w * k + b * k


def _write_run(data_dir, sweep: str, cfg: dict, seed: int, job: int, *, n_steps: int, log_every: int,
               eval_every: int, rng_seed: int, fx: dict, break_eq6: bool) -> None:
    rng = np.random.default_rng([rng_seed, job])
    steps = 0 if sweep == "fig2" else n_steps
    config = dict(sweep=sweep, seed=seed, steps=steps, synthetic=rng_seed, **cfg)
    run_id = run_id_of(config)
    diverged = cfg["lr"] >= DIVERGED_LR
    done = max(steps // 3, 1) if diverged else steps
    plant = _plant(sweep, cfg, fx, rng)
    if diverged:  # loss blew up: huge losses, chance accuracy
        plant = Plant(plant.gc * 50, 40.0, 30.0, 0.1, 0.1, plant.measure_z + 3)
    k = 1 if cfg["dataset"] == "parabola" else 10
    bfd_max = min(64 * k if k > 1 else cfg["n_train"], n_params(cfg))
    folder = RunFolder(data_dir, sweep, run_id)
    folder.start()
    folder.write("steps", steps_table(rng, run_id, plant, cfg, done, log_every,
                                      eq6_break_rows=fx["eq6_breaks"] if break_eq6 else 0))
    evals = evals_table(rng, run_id, plant, cfg, done, eval_every, fx, bfd_max)
    folder.write("evals", evals)
    if sweep in ("thm51", "demo"):
        theorem, layers = theorem_tables(rng, run_id, cfg, done, eval_every, fx, D_IN[cfg["dataset"]], k)
        folder.write("theorem", theorem)
        folder.write("layers", layers)
    if sweep == "fig1":
        folder.write("probes", parabola_probes(rng, run_id, done, eval_every, cfg["n_train"], fx["fig1_ripple"]))
    if sweep == "fig2":
        amp = 2.0 * math.exp(-fx["output_shrink"] * _pos(cfg["depth"], DEPTHS) + 0.1 * rng.standard_normal())
        folder.write("probes", diagonal_probes(rng, run_id, amp))
    test_acc = evals["acc"][evals["split"] == "test"]
    folder.finish({
        **{c: config[c] for c in ("sweep", "seed", "steps")}, **cfg, "run_id": run_id,
        "status": "diverged" if diverged else "completed", "n_params": n_params(cfg), "device": "cpu",
        "wall_s": 0.01 * done, "config_json": json.dumps(config, sort_keys=True), "steps_done": done,
        "best_test_acc": None if np.isnan(test_acc).all() else float(np.nanmax(test_acc)),
        "error": f"loss became non-finite at step {done}" if diverged else None,
        "gclab_version": "synthetic",
    })


def write_synthetic_store(data_dir, *, sweeps: Iterable[str] = ("fig1", "fig2", "fig3", "fig4", "fig5", "gcreg",
                                                               "thm51", "igr", "bfd"),
                          seeds: int = 3, n_steps: int = 200, log_every: int = 10, eval_every: int = 50,
                          rng_seed: int = 0, effects: dict | None = None, runs_scale: int = 1,
                          n_runs: int | None = None) -> None:
    """Write a synthetic store under `data_dir` (see the module docstring).

    `runs_scale` multiplies the number of seeds; `n_runs` (overrides both) writes exactly that
    many runs, taking seeds round-robin over every configuration of every requested sweep.
    """
    unknown = set(effects or {}) - set(EFFECTS)
    if unknown:
        raise KeyError(f"unknown synthetic effects {sorted(unknown)}; valid: {', '.join(EFFECTS)}")
    fx = {**EFFECTS, **(effects or {})}
    configs = [(sweep, {**BASE, **cfg}) for sweep in sweeps for cfg in grid(sweep)]
    n_seeds = seeds * runs_scale if n_runs is None else max(1, math.ceil(n_runs / max(len(configs), 1)))
    # Seed-major order, so truncating to n_runs drops the last seed of some configs, never a sweep.
    jobs = [(sweep, cfg, seed) for seed in range(n_seeds) for sweep, cfg in configs]
    jobs = jobs[:n_runs] if n_runs is not None else jobs
    first_igr = next((j for j, (sweep, _, _) in enumerate(jobs) if sweep == "igr"), None)
    for j, (sweep, cfg, seed) in enumerate(jobs):
        _write_run(data_dir, sweep, cfg, seed, j, n_steps=n_steps, log_every=log_every, eval_every=eval_every,
                   rng_seed=rng_seed, fx=fx, break_eq6=(j == first_igr))

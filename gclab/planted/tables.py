"""Vectorized builders of one planted run's tables (steps, evals, theorem/layers, probes).

Each builder takes the run's planted end-of-training values (`Plant`) and returns a dict of
numpy columns for `RunFolder.write`. No Python loop ever runs over rows: trajectories are
closed-form curves of the training fraction f = step / steps plus small seeded noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gclab.store.tolerances import DEFAULT_DTYPE, theorem_holds

L0 = 2.3  # loss at init (≈ log 10 for 10 classes)


@dataclass
class Plant:
    """End-of-training values of one run; trajectories converge to them."""

    gc: float  # train GC at the end (≈ "GC of a run")
    test_loss: float
    train_loss: float
    test_acc: float  # NaN for regression
    train_acc: float
    measure_z: float  # standardized complexity driving the other measures
    gc_start: float = 0.1  # GC at step 0 as a fraction of the final GC


def _frac(steps: np.ndarray, n_steps: int) -> np.ndarray:
    return steps / max(n_steps, 1)


def _approach(start, end, f, rate=5.0):
    """Exponential approach from `start` (f=0) to exactly `end` (f=1)."""
    return end + (start - end) * (np.exp(-rate * f) - np.exp(-rate)) / (1 - np.exp(-rate))


def steps_table(rng, run_id, plant: Plant, cfg: dict, n_steps: int, log_every: int, eq6_break_rows: int = 0) -> dict:
    s = np.arange(0, max(n_steps, 1), log_every, dtype=np.int64)
    n, f = len(s), _frac(s, n_steps)
    noise = lambda sd: np.exp(sd * rng.standard_normal(n))  # noqa: E731
    b = int(cfg["batch_size"])
    # Eq. 6: R ≥ 0, A and C bounded so that R + A ≥ 0 and R + A + C > 0.
    r_term = 0.5 * np.exp(-3.0 * f) * noise(0.1) + 1e-3
    a_term = r_term * rng.uniform(-0.3, 0.3, n)
    c_term = r_term * rng.uniform(-0.3, 1.0, n)
    gns = r_term + a_term + c_term
    if eq6_break_rows:
        rows = rng.choice(n, size=min(eq6_break_rows, n), replace=False)
        gns[rows] *= 1.0 + 1e-3  # a planted violation of the identity
    classif = not np.isnan(plant.train_acc)
    return {
        "run_id": np.full(n, run_id, dtype=object),
        "step": s,
        "lr": np.full(n, float(cfg["lr"])),
        "batch_size": np.full(n, b, dtype=np.int64),
        "train_loss": _approach(L0, plant.train_loss, f) * noise(0.05),
        "train_acc": np.clip(_approach(0.1, plant.train_acc, f) + 0.02 * rng.standard_normal(n), 0, 1)
        if classif
        else np.full(n, np.nan),
        "gc": plant.gc * _approach(plant.gc_start, 1.0, f) * noise(0.03),
        "grad_norm_sq": gns,
        "residual_term": r_term,
        "label_alignment": a_term,
        "batch_alignment": c_term,
        "per_example_grad_norm_sq": b * (r_term + a_term),  # R + A = (1/b) mean_x ||∇L_x||²
        "wall_s": np.cumsum(np.full(n, 0.01)),
    }


def eval_steps(n_steps: int, eval_every: int) -> np.ndarray:
    return np.unique(np.append(np.arange(0, max(n_steps, 1), eval_every), n_steps)).astype(np.int64)


def evals_table(
    rng, run_id, plant: Plant, cfg: dict, n_steps: int, eval_every: int, effects: dict, bfd_max: int
) -> dict:
    e = eval_steps(n_steps, eval_every)
    m, f = len(e), _frac(e, n_steps)
    eps = lambda sd: sd * rng.standard_normal(m)  # noqa: E731
    classif = not np.isnan(plant.train_acc)
    z = plant.measure_z
    # Measures at the end are monotone in z (the run's complexity) plus noise of varied size,
    # so GC ranks best against the gap and the others progressively worse.
    pn_end = np.exp(3.0 + 0.3 * z + 0.3 * rng.standard_normal())
    sp_end = np.exp(1.0 + 0.2 * z + 0.5 * rng.standard_normal())
    dist_end = np.exp(0.5 + 0.1 * z + 0.6 * rng.standard_normal())
    sharp_end = np.exp(2.0 + 0.05 * z + 0.8 * rng.standard_normal())
    common = {
        "param_norm_sq": _approach(np.exp(3.0), pn_end, f),
        "spectral_product": _approach(np.exp(1.0), sp_end, f),
        "dist_from_init": dist_end * (1 - np.exp(-5 * f)),
        "sharpness": _approach(20.0, sharp_end, f, rate=3.0),
    }
    gc_traj = plant.gc * _approach(plant.gc_start, 1.0, f)
    # No noise on a perfect accuracy: a run that interpolates reports exactly 1.
    acc = lambda start, end, sd: (  # noqa: E731
        np.clip(_approach(start, end, f) + eps(sd) * (end < 1), 0, 1) if classif else np.full(m, np.nan)
    )
    # Random inputs sit at the computable full functional dimension, ffd_deficit below the ceiling;
    # training inputs bfd_random_gap below it at init and a further bfd_drop below at the end.
    drop, gap, top = effects["bfd_drop"], effects["bfd_random_gap"], 1.0 - effects["ffd_deficit"]
    bfd_fit = np.clip(np.rint(bfd_max * (top - gap - drop * f + eps(0.01))), 1, bfd_max)
    bfd_rand = np.clip(np.rint(bfd_max * (top + eps(0.01))), 1, bfd_max)
    splits = {
        "train": (
            _approach(L0, plant.train_loss, f) * np.exp(eps(0.01)),
            acc(0.1, plant.train_acc, 0.002),
            gc_traj * np.exp(eps(0.01)),
            bfd_fit,
        ),
        "test": (
            _approach(L0, plant.test_loss, f) * np.exp(eps(0.01)),
            acc(0.1, plant.test_acc, 0.003),
            1.1 * gc_traj * np.exp(eps(0.01)),
            np.clip(bfd_fit + np.rint(eps(1.0)), 1, bfd_max),
        ),
        "random": (np.full(m, L0) + eps(0.02), acc(0.1, 0.1, 0.01), 1.5 * gc_traj * np.exp(eps(0.01)), bfd_rand),
    }
    out = {
        "run_id": np.full(3 * m, run_id, dtype=object),
        "step": np.tile(e, 3),
        "split": np.repeat(np.array(list(splits), dtype=object), m),
    }
    for i, col in enumerate(("loss", "acc", "gc", "bfd")):
        out[col] = np.concatenate([v[i] for v in splits.values()])
    out["bfd"] = out["bfd"].astype(np.int64)
    out.update({k: np.tile(v, 3) for k, v in common.items()})
    out["bfd_max"] = np.full(3 * m, bfd_max, dtype=np.int64)
    out["n_examples"] = np.repeat(np.array([int(cfg["n_train"]), int(cfg["n_test"]), int(cfg["n_test"])]), m)
    return out


def theorem_tables(
    rng, run_id, cfg: dict, n_steps: int, eval_every: int, effects: dict, d_in: int, k: int, n_examples: int = 8
) -> tuple[dict, dict]:
    """theorem and layers rows on (eval step × split ∈ {train, test} × example × layer), consistent:
    T_l² = (1 + ||h_l||²)/(σ(W_l) σ(∇h_l))² / min(d, k), Σ over layers, bound = ||∇θ f||² / Σ T²."""
    e = eval_steps(n_steps, eval_every)
    n_layers, width, bias = int(cfg["depth"]) + 1, int(cfg["width"]), bool(cfg.get("bias", True))
    shape = (len(e), 2, n_examples, n_layers)
    f = _frac(e, n_steps)[:, None, None, None]
    mdk = min(d_in, k)
    layer = np.arange(1, n_layers + 1)[None, None, None, :]
    h = np.where(layer == 1, d_in, 0.5 * width) * np.exp(0.2 * rng.standard_normal(shape))
    # σ(W) grows as exp(-slope_T f / 2) so that Σ T² moves by exp(slope_T f) over training.
    ws = 1.5 * np.exp(-effects["thm_slope_T"] * f / 2) * np.exp(0.05 * rng.standard_normal(shape))
    ijs = np.where(layer == 1, 1.0, np.exp(0.3 * rng.standard_normal(shape)) * 1.2)
    t_sq = ((1.0 if bias else 0.0) + h) / (ws * ijs) ** 2 / mdk
    t_sum = t_sq.sum(axis=-1)  # (eval, split, example)
    g = 50.0 * np.exp(effects["thm_slope_grad"] * f[..., 0]) * np.exp(0.2 * rng.standard_normal(t_sum.shape))
    bound, bound_tight = g / t_sum, g / (mdk * t_sum)
    ratio = rng.uniform(0.02, 0.8, t_sum.shape)
    n_bad = int(effects.get("thm_violations", 0))
    if n_bad:
        ratio.flat[rng.choice(ratio.size, size=min(n_bad, ratio.size), replace=False)] = 1.01
    gc_x = bound_tight * ratio
    idx = np.indices(t_sum.shape).reshape(3, -1)  # (eval, split, example) of each theorem row
    split_names = np.array(["train", "test"], dtype=object)
    n = t_sum.size
    theorem = {
        "run_id": np.full(n, run_id, dtype=object),
        "step": e[idx[0]],
        "split": split_names[idx[1]],
        "example": idx[2].astype(np.int64),
        "gc_x": gc_x.ravel(),
        "grad_theta_sq": g.ravel(),
        "transfer_sq_sum": t_sum.ravel(),
        "transfer_sq_sum_tight": (mdk * t_sum).ravel(),
        "bound": bound.ravel(),
        "bound_tight": bound_tight.ravel(),
        "holds_tight": theorem_holds(gc_x, bound_tight, cfg.get("dtype", DEFAULT_DTYPE)).ravel(),
    }
    lidx = np.indices(shape).reshape(4, -1)
    layers = {
        "run_id": np.full(lidx.shape[1], run_id, dtype=object),
        "step": e[lidx[0]],
        "split": split_names[lidx[1]],
        "example": lidx[2].astype(np.int64),
        "layer": (lidx[3] + 1).astype(np.int32),
        "h_norm_sq": h.ravel(),
        "weight_spec": ws.ravel(),
        "input_jac_spec": ijs.ravel(),
        "transfer_sq": t_sq.ravel(),
    }
    return theorem, layers


def parabola_target(t: np.ndarray, n_train: int, fit: float, line: float) -> np.ndarray:
    """fig1's planted end-of-training function: `fit` × the minimal interpolant of y = x² through the
    n_train points + (1 − fit) × `line` × their least-squares line (a constant: the points are symmetric).
    fit = 1: the interpolant; fit = 0, line = 1: the straight-line fit; fit = 0, line = 0: the zero function."""
    knots = np.linspace(-1.0, 1.0, n_train)
    return fit * np.interp(t, knots, knots**2) + (1 - fit) * line * np.mean(knots**2)


def parabola_train_mse(n_train: int, fit: float, line: float, ripple: float) -> float:
    """Train MSE of `parabola_target` (+ a ripple of that amplitude, mean square ripple²/2) on the points."""
    knots = np.linspace(-1.0, 1.0, n_train)
    return float(np.mean((parabola_target(knots, n_train, fit, line) - knots**2) ** 2) + ripple**2 / 2)


def parabola_probes(
    rng, run_id, n_steps: int, eval_every: int, n_train: int, ripple: float, fit: float = 1.0, line: float = 1.0
) -> dict:
    """fig1: f on t ∈ [-1, 1] moves from ≈0 to `parabola_target` plus a ripple."""
    e = eval_steps(n_steps, eval_every)
    t = np.linspace(-1.0, 1.0, 201)
    target = parabola_target(t, n_train, fit, line) + ripple * np.sin(9 * np.pi * t + rng.uniform(0, 2 * np.pi))
    alpha = (1 - np.exp(-5 * _frac(e, n_steps)))[:, None]
    out = alpha * target[None, :] + 0.002 * rng.standard_normal((len(e), len(t)))
    n = out.size
    return {
        "run_id": np.full(n, run_id, dtype=object),
        "step": np.repeat(e, len(t)),
        "t": np.tile(t, len(e)),
        "output": out.ravel(),
        "output_index": np.zeros(n, dtype=np.int32),
    }


def diagonal_probes(rng, run_id, amplitude: float) -> dict:
    """fig2: outputs at init along the hypercube diagonal; their scale is `amplitude`."""
    t = np.linspace(-1.0, 1.0, 41)
    phase, freq = rng.uniform(0, 2 * np.pi), rng.uniform(1, 3)
    out = amplitude * np.sin(freq * np.pi * t + phase)
    n = len(t)
    return {
        "run_id": np.full(n, run_id, dtype=object),
        "step": np.zeros(n, dtype=np.int64),
        "t": t,
        "output": out,
        "output_index": np.zeros(n, dtype=np.int32),
    }


def fdim_table(rng, run_id, evals: dict, output: str, batch: int, nested: tuple[int, ...], ceiling) -> dict:
    """fdim rows consistent with `evals`: the train/test/random ranks of its `batch`-input bfd batches,
    and at every eval the nested random batches of sizes `nested` (`ceiling(n)`: the rank's ceiling at n):
    the random rank rescaled to n's ceiling, so non-decreasing in n with a plateau at the full ceiling."""
    step, split, bfd, top = evals["step"], evals["split"], evals["bfd"], evals["bfd_max"]
    rand = split == "random"
    rows = {"step": [step], "split": [split], "n_inputs": [np.full(len(step), batch)], "bfd": [bfd], "bfd_max": [top]}
    for n in nested:
        cap = ceiling(n)
        rows["step"].append(step[rand])
        rows["split"].append(split[rand])
        rows["n_inputs"].append(np.full(rand.sum(), n))
        rank = np.rint(bfd[rand] * ceiling(max(nested)) / np.maximum(top[rand], 1))
        rows["bfd"].append(np.minimum(cap, rank).astype(np.int64))
        rows["bfd_max"].append(np.full(rand.sum(), cap))
    out = {k: np.concatenate(v) for k, v in rows.items()}
    m = len(out["step"])
    sv_max = np.exp(rng.normal(2.0, 0.1, m))
    return {
        "run_id": np.full(m, run_id, dtype=object),
        **out,
        "output": np.full(m, output, dtype=object),
        "sv_max": sv_max,
        "sv_last_kept": sv_max * 1e-6,
        "sv_first_dropped": sv_max * 1e-15,
        "tol": sv_max * 1e-12,
    }

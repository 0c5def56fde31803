"""One run: build data and model from a RunConfig, train, and record it through `Recorder`
(gclab/collect/recorder.py), the same path that records a user's own loop.

A logged step costs one forward and one batched backward: `rec.step` runs `step_metrics(...,
set_grad=True)`, which computes GC, R_B, A_B, C_B and also leaves ∇L_B in `.grad` for the
optimizer. Explicit penalties add their gradients on top.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from gclab.collect import metrics
from gclab.collect.config import RunConfig
from gclab.collect.datasets import load_dataset
from gclab.collect.device import resolve_device
from gclab.collect.evaluate import make_splits
from gclab.collect.init import initialize
from gclab.collect.losses import batch_loss
from gclab.collect.models import build_model
from gclab.collect.recorder import Diverged, Recorder
from gclab.collect.regularizers import add_penalty_grads
from gclab.collect.target import TrainTarget
from gclab.store.location import parse


def make_optimizer(cfg: RunConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.momentum, 0.999))
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum)


def batches(n: int, batch_size: int, generator: torch.Generator):
    """Shuffled epochs without replacement; batch_size >= n is full-batch gradient descent."""
    if batch_size >= n:
        while True:
            yield torch.arange(n)
    while True:
        perm = torch.randperm(n, generator=generator)
        for i in range(0, n - batch_size + 1, batch_size):
            yield perm[i : i + batch_size]


def noisy_labels(y: torch.Tensor, p: float, n_classes: int, generator: torch.Generator) -> torch.Tensor:
    """Per-step label noise (`step_label_noise`, docs/EXPERIMENTS.md fig3): each label of the batch
    y (b,) is replaced, with probability p, by a class drawn uniformly from all n_classes (so it
    changes with probability p·(k−1)/k); fresh draws at every call. Returns a new (b,) tensor."""
    if p <= 0:
        return y
    flip = torch.rand(y.shape[0], generator=generator) < p
    drawn = torch.randint(0, n_classes, (y.shape[0],), generator=generator)
    return torch.where(flip.to(y.device), drawn.to(y.device, y.dtype), y)


def raw_dir(data_dir) -> Path:
    """Dataset files you supply: `<store>/raw` for a local store; ./data/raw here for an object store."""
    location = parse(data_dir)
    return location.local / "raw" if location.local is not None else Path("data") / "raw"


def load_run_dataset(cfg: RunConfig, data_dir, **sizes):
    options = {k: getattr(cfg, k) for k in ("input_dim", "n_classes") if getattr(cfg, k) is not None}
    if cfg.dataset == "mnist":
        options["flatten"] = cfg.model == "mlp"  # the CNN wants (1, 28, 28) images
    sizes = sizes or {"n_train": cfg.n_train, "n_test": cfg.n_test}
    return load_dataset(
        cfg.dataset,
        **sizes,
        seed=cfg.seed,
        label_noise=cfg.label_noise,
        raw_dir=cfg.raw_dir or raw_dir(data_dir),
        data_seed=cfg.data_seed,
        **options,
    )


class DivergenceCheck:
    """NaN/inf, or a train loss far above where training started, ends the run as diverged."""

    def __init__(self, cfg: RunConfig, model: nn.Module):
        self.cfg, self.limit = cfg, None
        # Dead ReLUs can hold the loss finite while the weights explode: watch ||θ||² too.
        self.param_limit = cfg.divergence_factor**2 * max(float(metrics.param_norm_sq(model)), 1.0)

    def params(self, model: nn.Module, step: int) -> None:
        norm_sq = float(metrics.param_norm_sq(model))
        if not math.isfinite(norm_sq) or norm_sq > self.param_limit:
            raise Diverged(f"||θ||² = {norm_sq:.3g} at step {step} (lr={self.cfg.lr}): training diverged", step=step)

    def __call__(self, loss: float, step: int) -> None:
        if self.limit is None and math.isfinite(loss):
            self.limit = self.cfg.divergence_factor * max(loss, 1.0)
        if not math.isfinite(loss) or loss > self.limit:
            raise Diverged(f"train loss {loss:.4g} at step {step} (lr={self.cfg.lr}): training diverged", step=step)


def train(cfg: RunConfig, data_dir, *, threads: int | None = None, progress: bool = False) -> dict:
    """Train one run and record it through `Recorder` (the folder is written at the end); returns the runs row.

    Any exception is recorded as a `failed` run by the Recorder and propagates."""
    with Recorder(data_dir, config=cfg) as rec:
        if threads:
            torch.set_num_threads(threads)
        _train(cfg, data_dir, rec, progress)
    assert rec.row is not None  # the Recorder writes the runs row when the block ends
    return rec.row


def _train(cfg: RunConfig, data_dir, rec: Recorder, progress: bool) -> None:
    device, dtype = resolve_device(cfg.device), getattr(torch, cfg.dtype)
    ds = load_run_dataset(cfg, data_dir)
    x_train = ds.x_train.to(device, dtype)
    y_train = ds.y_train.to(device) if ds.task == "classification" else ds.y_train.to(device, dtype)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = build_model(
        cfg.model,
        input_shape=ds.input_shape,
        n_out=ds.n_classes,
        width=cfg.width,
        depth=None if cfg.model == "resnet18" else cfg.depth,
        activation=cfg.activation,
        bias=cfg.bias,
    )
    initialize(model, cfg.init, scale=cfg.init_scale, zero_bias=cfg.zero_bias, generator=gen)
    model.to(device, dtype)
    opt = make_optimizer(cfg, model.parameters())
    splits = make_splits(ds, cfg, device, dtype)
    # Own generator: the projections must not shift the batch order drawn from `gen`.
    hutchinson = (
        {}
        if cfg.gc_projections is None
        else {"n_projections": cfg.gc_projections, "generator": torch.Generator().manual_seed(cfg.seed)}
    )
    loss_fn = lambda out, y: batch_loss(out, y, cfg.loss)  # noqa: E731
    rec.annotate(
        n_params=sum(p.numel() for p in model.parameters()), device=str(device), n_train=ds.n_train, n_test=ds.n_test
    )

    check_finite = DivergenceCheck(cfg, model)
    target = TrainTarget(cfg, x_train, y_train)
    order = batches(ds.n_train, cfg.batch_size, gen)
    # Own generator: drawing label noise must not shift the batch order (runs without it stay identical).
    noise_gen = torch.Generator().manual_seed(cfg.seed + 1)
    bar, step = _bar(cfg, progress), 0
    try:
        for step in range(cfg.steps + 1):
            if step % cfg.eval_every == 0 or step == cfg.steps:
                check_finite.params(model, step)
                rec.evaluate(step, model, splits)
                # Without a target the full training set is measured once, at the end.
                if (target.active or step == cfg.steps) and target.met(model, step):
                    break
            elif target.active and cfg.stop_check_every and step % cfg.stop_check_every == 0:
                # A cheap check between evals; where it holds, evaluate here so the last eval is the stop.
                if target.met(model, step):
                    check_finite.params(model, step)
                    rec.evaluate(step, model, splits)
                    break
            if step == cfg.steps:
                break
            idx = next(order)
            xb, yb = x_train[idx], noisy_labels(y_train[idx], cfg.step_label_noise, ds.n_classes, noise_gen)
            if step % cfg.log_every == 0:
                row = rec.step(step, model, xb, yb, metrics_on=cfg.metrics, **hutchinson)
                check_finite(row["train_loss"], step)
            else:
                opt.zero_grad(set_to_none=False)
                loss_fn(model(xb), yb).backward()
            add_penalty_grads(model, xb, yb, loss_fn, cfg, generator=gen)
            opt.step()
            bar.update(1)
    finally:
        bar.close()
        rec.annotate(**target.columns())  # steps_done: the Recorder's count


def _bar(cfg: RunConfig, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=cfg.steps, desc=f"run {cfg.run_id}", leave=False, disable=not enabled, unit="step")

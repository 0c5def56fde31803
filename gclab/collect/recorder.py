"""`Recorder`: record any training loop into the run store, the one path that writes runs.

    with Recorder(data="data", sweep="mine", config={"lr": 0.1, "width": 64}) as rec:
        for step, (xb, yb) in enumerate(loader):
            rec.step(step, model, xb, yb)      # forward + backward: ∇L_B in .grad, a steps row
            optimizer.step()
            if step % 500 == 0:
                rec.evaluate(step, model, {"train": (xtr, ytr), "test": (xte, yte)})  # an evals row per split

`rec.step` runs the metric engine's `step_metrics(..., set_grad=True)`: GC and the Eq. 6 terms
of the batch from the same pass that leaves the gradient for the optimizer (docs/METRICS.md).
The block claims the run (`store.claim`, as the runner does: a second process recording the same
config is refused with ClaimTaken) and the run is stored when the block ends, all at once
(`store.layout.RunFolder`): `completed`; `diverged` when the block raises `Diverged`, which
`step` and `evaluate` raise themselves on a non-finite loss (the built-in loop's rule); or
`failed` with the one-line error of any other exception (which propagates). The built-in loop,
`collect.train`, records through this class. `config` keys that are RunConfig fields fill the
`runs` columns; every key is kept in `config_json`; the run_id is the hash of sweep + config
(+ `tag`), so recording the same config again replaces that run when the new block ends (until
then the stored run stays whole; give a `tag` to keep both). The shipped sweep names (`fig5`, ...)
belong to the runner: a user's loop records under its own name unless `shipped_sweep=True`.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch
from torch import nn

from gclab.collect import metrics
from gclab.collect.buffer import TableBuffer
from gclab.collect.config import CONFIG_COLUMNS, RunConfig
from gclab.collect.evaluate import Split, log_eval
from gclab.collect.losses import LOSSES, accuracy, batch_loss
from gclab.collect.metrics.capture import fallback_layers, mixes_batch
from gclab.store.errors import one_line
from gclab.store.layout import run_id_of
from gclab.store.location import parse
from gclab.store.schema import MARKER_TABLE, RUNS, SCHEMAS
from gclab.store.writer import run_writer

SWEEP_NAME = re.compile(r"[A-Za-z0-9_.-]+")  # fullmatch: `$` would accept a final newline


def one_line_error(exc: BaseException) -> str:
    """The error as stored in runs.error: type and message on one line."""
    return one_line(exc, with_type=not isinstance(exc, Diverged), limit=500)


class Diverged(Exception):
    """Raise inside a Recorder block to end the run as `diverged` (stored, not re-raised).
    `step`: the step that diverged, whose optimizer step was not taken (runs.steps_done)."""

    def __init__(self, message: str, *, step: int | None = None):
        super().__init__(message)
        self.step = step


@dataclass(frozen=True)
class EvalSettings:
    """What `evaluate` measures besides loss, accuracy and GC (the RunConfig fields of the same
    names; all off for a user's loop unless its config names them)."""

    run_id: str
    loss: str = "cross_entropy"
    seed: int = 0
    theorem_examples: int = 0
    bfd_batch: int = 0
    bfd_output: str = "logits"
    bfd_random_batches: tuple[int, ...] = ()
    sharpness_iters: int = 0
    probe_points: int = 0


def _user_config(sweep: str, config: Mapping[str, Any], tag: str | None, shipped_sweep: bool) -> tuple[str, dict, str]:
    """(run_id, runs columns, config_json) of a user's config; one-line ValueError if it cannot be stored."""
    from gclab.collect.sweep import shipped_sweeps

    if not isinstance(sweep, str) or not SWEEP_NAME.fullmatch(sweep):
        raise ValueError(f"sweep {sweep!r} is not a valid name: use letters, digits, '_', '.', '-' (e.g. sweep='mine')")
    if sweep in shipped_sweeps() and not shipped_sweep:
        raise ValueError(
            f"sweep {sweep!r} is a shipped sweep, whose runs the paper's verdicts read; record under your own "
            "name (e.g. sweep='mine'), or pass shipped_sweep=True if this run belongs to it"
        )
    config = dict(config)
    identity = {**config, "sweep": sweep, **({"tag": tag} if tag is not None else {})}
    try:
        run_id = run_id_of(identity)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"config must hold JSON values (numbers, strings, bools, lists) and no NaN/inf: {exc}; "
            "convert other values to strings"
        ) from None
    columns = {"sweep": sweep}
    for key in CONFIG_COLUMNS:
        if key in config and key != "sweep":
            try:
                pa.array([config[key]], type=RUNS.field(key).type)
            except (pa.ArrowException, TypeError, ValueError):
                raise ValueError(
                    f"config[{key!r}] = {config[key]!r} does not fit the runs column {key} "
                    f"({RUNS.field(key).type}); pass a {RUNS.field(key).type} or rename the key"
                ) from None
            columns[key] = config[key]
    return run_id, columns, json.dumps(identity, sort_keys=True)


class Recorder:
    """Record one run (see the module docstring). `config` is a dict, or a RunConfig (the built-in loop)."""

    def __init__(
        self,
        data: str | Path = "data",
        sweep: str = "adhoc",
        config: Mapping[str, Any] | RunConfig | None = None,
        *,
        tag: str | None = None,
        loss: str | None = None,
        shipped_sweep: bool = False,
        gc_input: str | None = None,
    ):
        location = parse(data)  # a folder, or an object-store URI (s3://bucket/prefix)
        self.data = location.local or location.uri
        # gc_input: the submodule whose output GC is taken w.r.t. in steps and evals (token models:
        # the embedding; docs/METRICS.md, "Token models"); None: the model input.
        self.gc_input = gc_input
        if isinstance(config, RunConfig):
            self.run_id, self.sweep = config.run_id, config.sweep
            self._columns = config.runs_row()
            self.settings = EvalSettings(
                **{f.name: getattr(config, f.name) for f in fields(EvalSettings) if f.name != "run_id"},
                run_id=self.run_id,
            )
        else:
            config = dict(config or {})
            self.run_id, columns, config_json = _user_config(sweep, config, tag, shipped_sweep)
            self.sweep = sweep
            self._columns = {"run_id": self.run_id, **columns, "config_json": config_json}
            options = {f.name: config[f.name] for f in fields(EvalSettings) if f.name in config and f.name != "run_id"}
            self.settings = EvalSettings(run_id=self.run_id, **{**options, **({"loss": loss} if loss else {})})
        if self.settings.loss not in LOSSES:
            known = " or ".join(map(repr, LOSSES))
            raise ValueError(f"loss {self.settings.loss!r} is not one the engine knows: use {known}")
        self.bufs = {t: TableBuffer() for t in SCHEMAS if t != MARKER_TABLE}
        self.folder = run_writer(location, self.sweep, self.run_id)
        self._extra: dict[str, Any] = {}
        self._init_params: list[torch.Tensor] | None = None
        self._last_step = self._last_eval = -1
        self._diverged_at: int | None = None
        self._open = False
        self.row: dict | None = None

    # -- the block -----------------------------------------------------------------------
    def __enter__(self) -> Recorder:
        if self.row is not None or self._open:
            raise RuntimeError(
                f"this Recorder already recorded run {self.run_id}; create a new Recorder for another run"
            )
        self.folder.start()  # claims the run: ClaimTaken if another process is recording it
        self.t0 = time.perf_counter()
        self._open = True
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        status, error = "completed", None
        if exc is not None:
            status, error = ("diverged" if isinstance(exc, Diverged) else "failed"), one_line_error(exc)
            if isinstance(exc, Diverged) and exc.step is not None:
                self._diverged_at = exc.step
        self._open = False
        self._finish(status, error)
        return isinstance(exc, Diverged)  # a divergence is a result; anything else propagates

    def _check_open(self) -> None:
        if not self._open:
            raise RuntimeError("record inside the block: `with Recorder(...) as rec:` then rec.step / rec.evaluate")

    def annotate(self, **columns) -> None:
        """Set runs columns the recorder cannot know (e.g. n_train); names must be in gclab/store/schema.py."""
        unknown = set(columns) - set(RUNS.names)
        if unknown:
            raise ValueError(f"{sorted(unknown)} are not runs columns; see docs/SCHEMA.md for the names")
        self._extra.update(columns)

    # -- logging -------------------------------------------------------------------------
    def _seen(self, model: nn.Module) -> None:
        if self._init_params is None:  # θ₀ for dist_from_init: the parameters when first seen
            self._init_params = [p.detach().clone() for p in model.parameters()]
            first = next(model.parameters(), None)
            self._extra.setdefault("n_params", sum(p.numel() for p in model.parameters()))
            self._extra.setdefault("device", str(first.device) if first is not None else "cpu")

    def step(
        self,
        step: int,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        metrics_on: bool = True,
        set_grad: bool = True,
        lr: float | None = None,
        n_projections: int | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, float]:
        """Forward and backward on the batch, leaving ∇L_B in `.grad` (as `zero_grad(); loss.backward()`),
        and a steps row: GC and the Eq. 6 terms (`metrics_on=False`: loss and accuracy only). Returns the row.
        `set_grad=False` leaves `.grad` alone (a framework that runs its own backward, e.g. Lightning).
        A non-finite loss raises Diverged after the row is kept: the run ends `diverged`."""
        self._check_open()
        self._seen(model)
        loss, batchnorm = self.settings.loss, mixes_batch(model)
        if metrics_on and set_grad and not batchnorm:  # one pass: metrics and the gradient
            row = metrics.step_metrics(
                model,
                x,
                y,
                loss=loss,
                set_grad=True,
                n_projections=n_projections,
                generator=generator,
                gc_input=self.gc_input,
            )
        elif metrics_on:  # BatchNorm's train-mode gradient differs from the eval-mode one the metrics use
            was_training = model.training
            model.train(was_training and not batchnorm)
            row = metrics.step_metrics(
                model, x, y, loss=loss, n_projections=n_projections, generator=generator, gc_input=self.gc_input
            )
            model.train(was_training)
            if set_grad:
                model.zero_grad(set_to_none=False)
                batch_loss(model(x), y, loss).backward()
        else:
            if set_grad:
                model.zero_grad(set_to_none=False)
            with torch.set_grad_enabled(set_grad):
                out = model(x)
                value = batch_loss(out, y, loss)
            if set_grad:
                value.backward()
            row = {"train_loss": float(value.detach()), "train_acc": accuracy(out, y, loss)}
        if metrics_on and fallback_layers(model):  # which layers the engine's generic fallback took
            self._extra["fallback_layers"] = "; ".join(fallback_layers(model))
        if lr is None:
            lr = self._columns.get("lr")
        self.bufs["steps"].append(
            run_id=self.run_id,
            step=step,
            lr=math.nan if lr is None else lr,
            batch_size=len(x),
            wall_s=time.perf_counter() - self.t0,
            **row,
        )
        self._last_step = max(self._last_step, step)
        if not math.isfinite(row["train_loss"]):
            raise Diverged(f"train loss {row['train_loss']} at step {step}: training diverged", step=step)
        return row

    def evaluate(
        self, step: int, model: nn.Module, splits: Mapping[str, tuple[torch.Tensor, torch.Tensor]] | list[Split]
    ) -> None:
        """An evals row per split (loss, accuracy, GC, ‖θ‖², spectral product, distance from θ₀), in eval mode;
        theorem, fdim and probe rows too when the settings ask for them. A non-finite loss raises Diverged."""
        self._check_open()
        self._seen(model)
        if isinstance(splits, Mapping):
            splits = [Split(name, x, y) for name, (x, y) in splits.items()]
        n_before = len(self.bufs["evals"])
        with torch.enable_grad():
            log_eval(model, splits, self.settings, step, self._init_params, self.bufs, gc_input=self.gc_input)
        self._last_eval = max(self._last_eval, step)
        new = {k: v[n_before:] for k, v in self.bufs["evals"].columns().items() if k in ("split", "loss")}
        bad = [(s, v) for s, v in zip(new.get("split", []), new.get("loss", [])) if not math.isfinite(v)]
        if bad:
            raise Diverged(f"{bad[0][0]} loss {bad[0][1]} at step {step}: training diverged", step=step)

    # -- the run folder ------------------------------------------------------------------
    def _finish(self, status: str, error: str | None) -> None:
        for table, buf in self.bufs.items():
            if len(buf):
                self.folder.write(table, buf.columns())
        evals = self.bufs["evals"].columns() if len(self.bufs["evals"]) else {}
        test_acc = [a for a, s in zip(evals.get("acc", []), evals.get("split", [])) if s == "test" and math.isfinite(a)]
        self.row = {
            **self._columns,
            "status": status,
            "error": error,
            # Steps the optimizer took: a step that diverged was not taken; otherwise every logged
            # step was followed by one, and an evaluation at step s comes after s steps.
            "steps_done": self._diverged_at
            if self._diverged_at is not None
            else max(self._last_step + 1, self._last_eval, 0),
            "best_test_acc": max(test_acc, default=None),
            "gclab_version": version("gclab"),
            "wall_s": time.perf_counter() - self.t0,
            **self._extra,
        }
        self.folder.finish(self.row)

"""`GCCallback`: record a PyTorch Lightning fit into the gclab run store through `Recorder`.

    from gclab.lightning import GCCallback
    cb = GCCallback(data="data", sweep="mine", config={"lr": 0.1, "width": 64},
                    eval_data={"train": (x_train, y_train), "test": (x_test, y_test)})
    lightning.Trainer(callbacks=[cb], ...).fit(module, loader)

Every `log_every` optimizer steps, before Lightning's own step, the batch's GC and Eq. 6 terms
are measured at the current parameters (one extra forward and backward that leaves `.grad`
alone; Lightning then runs its training_step as usual). Every `eval_every` steps and at the end
of the fit, `eval_data` is evaluated (an evals row per split). The LightningModule's
`forward(x)` must return the outputs the loss is taken of (logits for cross_entropy). The run
is claimed when the fit starts and stored when it ends, as the Recorder stores a run:
`completed`; `diverged` at a non-finite loss (the fit is then stopped); or `failed` with the
one-line error if it raised. One callback records one fit: a second `fit` with the same callback
is refused (RuntimeError) before anything is written; give each fit its own GCCallback.
Needs the optional extra: `pip install gclab[lightning]`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from lightning.pytorch import Callback

from gclab.collect.recorder import Diverged, Recorder


def first_two(batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) of a batch that is a (x, y, ...) tuple or list."""
    return batch[0], batch[1]


class GCCallback(Callback):
    def __init__(
        self,
        data="data",
        sweep: str = "lightning",
        config: Mapping[str, Any] | None = None,
        *,
        tag: str | None = None,
        loss: str | None = None,
        shipped_sweep: bool = False,
        log_every: int = 10,
        eval_every: int | None = None,
        eval_data: Mapping[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
        batch_to_xy: Callable = first_two,
    ):
        if log_every < 1 or (eval_every is not None and eval_every < 1):
            raise ValueError("log_every and eval_every must be ≥ 1, e.g. log_every=10")
        self.recorder = Recorder(data, sweep, config, tag=tag, loss=loss, shipped_sweep=shipped_sweep)
        self.log_every, self.eval_every, self.eval_data = log_every, eval_every, dict(eval_data or {})
        self.batch_to_xy = batch_to_xy
        self._open = False

    def _evaluate(self, trainer, pl_module) -> None:
        if self.eval_data:
            device = pl_module.device
            splits = {k: (x.to(device), y.to(device)) for k, (x, y) in self.eval_data.items()}
            self.recorder.evaluate(trainer.global_step, pl_module, splits)

    def on_fit_start(self, trainer, pl_module) -> None:
        if self.recorder.row is not None:
            raise RuntimeError(
                f"this GCCallback already recorded run {self.run_id} in an earlier fit; give each Trainer.fit "
                "its own GCCallback (with another tag to keep both runs)"
            )
        if trainer.is_global_zero:
            self.recorder.__enter__()
            self._open = True

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not self._open:
            return
        step = trainer.global_step
        try:
            if self.eval_every and step % self.eval_every == 0:
                self._evaluate(trainer, pl_module)
            if step % self.log_every == 0:
                x, y = self.batch_to_xy(batch)
                lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
                self.recorder.step(step, pl_module, x, y, set_grad=False, lr=lr)
        except Diverged as exc:  # stored as diverged; the fit stops after this batch
            self._close(exc)
            trainer.should_stop = True

    def on_fit_end(self, trainer, pl_module) -> None:
        if self._open:
            try:
                self._evaluate(trainer, pl_module)
            except Diverged as exc:
                self._close(exc)
                return
            self._close(None)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if self._open:
            self._close(exception)

    def _close(self, exc: BaseException | None) -> None:
        self._open = False
        self.recorder.__exit__(type(exc) if exc else None, exc, None)

    @property
    def run_id(self) -> str:
        return self.recorder.run_id

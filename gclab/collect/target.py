"""The stop rule: train until the full training set is fitted (docs/EXPERIMENTS.md,
"Training to interpolation").

Checked at every eval on EVERY training example (not the eval subset), in eval mode, with the
loss the optimizer minimizes minus any explicit penalty. ``steps`` stays the cap: a run that
never meets its target ends there with ``target_reached = False``.
"""

from __future__ import annotations

import torch

from gclab.collect.config import RunConfig
from gclab.collect.evaluate import loss_and_acc


class TrainTarget:
    def __init__(self, cfg: RunConfig, x_train: torch.Tensor, y_train: torch.Tensor):
        self.cfg, self.x, self.y = cfg, x_train, y_train
        self.active = cfg.stop_at_train_error is not None or cfg.stop_at_train_loss is not None
        self.step: int | None = None
        self.loss = self.error = float("nan")

    def met(self, model: torch.nn.Module, step: int) -> bool:
        """Measure the fit at this eval; True once every set target holds (then training stops)."""
        was_training = model.training
        model.eval()
        self.loss, acc = loss_and_acc(model, self.x, self.y, self.cfg.loss)
        model.train(was_training)
        self.error = 1.0 - acc  # NaN for a regression
        c = self.cfg
        ok = (
            self.active
            and (c.stop_at_train_error is None or self.error <= c.stop_at_train_error)
            and (c.stop_at_train_loss is None or self.loss <= c.stop_at_train_loss)
        )
        if ok and self.step is None:
            self.step = step
        return ok

    def columns(self) -> dict:
        """The runs columns this rule fills."""
        return {
            "target_reached": (self.step is not None) if self.active else None,
            "target_step": self.step,
            "final_train_error": self.error,
            "final_train_loss": self.loss,
        }

"""A run's resolved configuration, validated by pydantic.

Every `runs` column that describes an experiment is a field here, plus the log/eval cadence
and the device. `run_id` hashes everything but the device (the same experiment on CPU or GPU
is the same run), so a sweep re-run anywhere finds its finished runs.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gclab.collect.datasets import DATASETS
from gclab.collect.init import INIT_SCHEMES as INITS
from gclab.collect.init import zero_bias_default
from gclab.collect.losses import LOSSES
from gclab.collect.models import ACTIVATIONS, MODELS
from gclab.store.layout import run_id_of
from gclab.store.schema import RUNS, SCALES

# Fields that do not change what is computed, so they stay out of the run_id.
NOT_HASHED = ("device", "raw_dir")
# Fields added after stores existed: hashed only when set away from their default, so every earlier
# run keeps its run_id (a re-run still finds it).
HASHED_IF_SET = {"step_label_noise": 0.0, "stop_check_every": None}


class RunConfig(BaseModel):
    # allow_inf_nan=False: every float must be finite (inf would also break the run_id hash).
    # Literal[REGISTRY] unpacks the registry's tuple at run time, so pydantic checks against its one
    # definition; static checkers cannot evaluate that form, hence the pyright ignores on those fields.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    sweep: str = Field("adhoc", pattern=r"^[A-Za-z0-9_.-]+$", description="sweep name (folder sweep=<name>)")
    seed: int = Field(0, ge=0)
    # data
    dataset: Literal[DATASETS] = "mnist1d"  # pyright: ignore[reportInvalidTypeForm]
    data_seed: int = Field(
        42,
        ge=0,
        description="seed of the data itself (42: the canonical MNIST-1D); `seed` drives init, order and label noise",
    )
    n_train: int | None = Field(None, ge=1, description="training examples (dataset default when unset)")
    n_test: int | None = Field(None, ge=1)
    label_noise: float = Field(
        0.0, ge=0.0, lt=1.0, description="fraction of training labels replaced once, before training (static)"
    )
    step_label_noise: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description=(
            "per-step label noise (label noise in SGD, the GC paper's ref. [15]): each example of every "
            "batch gets a uniformly drawn label with this probability, fresh at every step"
        ),
    )
    input_dim: int | None = Field(None, ge=1, description="teacher dataset input dimension")
    n_classes: int | None = Field(None, ge=2, description="teacher dataset classes")
    raw_dir: str | None = Field(None, description="folder of user-supplied datasets (default: <data>/raw)")
    # model
    model: Literal[MODELS] = "mlp"  # pyright: ignore[reportInvalidTypeForm]
    width: int = Field(100, ge=1)
    depth: int = Field(2, ge=0, le=64)
    activation: Literal[ACTIVATIONS] = "relu"  # pyright: ignore[reportInvalidTypeForm]
    bias: bool = True
    init: Literal[INITS] = "default"  # pyright: ignore[reportInvalidTypeForm]
    init_scale: float = Field(1.0, gt=0.0)
    zero_bias: bool | None = Field(
        None,
        description=(
            "zero biases at init; default: the scheme's choice (zero for every "
            "named scheme, torch's random biases for 'default')"
        ),
    )
    # optimisation
    loss: Literal[LOSSES] = "cross_entropy"  # pyright: ignore[reportInvalidTypeForm]
    optimizer: Literal["sgd", "momentum", "adam"] = "sgd"
    lr: float = Field(0.05, gt=0.0, le=1e4)
    momentum: float = Field(0.0, ge=0.0, lt=1.0, description="SGD momentum, or Adam's beta1; default by optimizer")
    batch_size: int = Field(64, ge=1, description="batch size; >= n_train means full-batch GD")
    steps: int = Field(1000, ge=0, le=10_000_000, description="optimizer steps; with a stop target, the cap")
    # stop rule (docs/EXPERIMENTS.md, "Training to interpolation"): checked at every eval on the FULL training set
    stop_at_train_error: float | None = Field(
        None,
        ge=0.0,
        lt=1.0,
        description=(
            "stop at the first eval where the training error (1 − acc on every "
            "training example) is <= this; 0 = interpolation"
        ),
    )
    stop_at_train_loss: float | None = Field(
        None, gt=0.0, description="stop at the first eval where the mean training loss (no regularizers) is <= this"
    )
    stop_check_every: int | None = Field(
        None,
        ge=1,
        description=(
            "check the stop target every this many steps as well (one forward pass over the training set); "
            "where it is met the run is evaluated and stops, so the stop lands near the target without "
            "paying for frequent evals; None: at evals only"
        ),
    )
    # explicit regularizers
    l2: float = Field(0.0, ge=0.0)
    spectral_reg: float = Field(0.0, ge=0.0)
    flatness_reg: float = Field(0.0, ge=0.0)
    gc_reg: float = Field(0.0, ge=0.0)
    gc_reg_projections: int | None = Field(None, ge=1, description="None: exact GC penalty; n: random projections")
    # logging
    metrics: bool = Field(True, description="per-step GC and Eq. 6 terms in the steps table")
    gc_projections: int | None = Field(
        None,
        ge=1,
        description="None: exact GC at training steps; n: Hutchinson "
        "estimate from n projections, standard error in steps.gc_stderr (evals stay exact)",
    )
    log_every: int = Field(10, ge=1)
    eval_every: int = Field(100, ge=1)
    eval_examples: int = Field(512, ge=1, description="examples per split for eval loss/acc/GC")
    theorem_examples: int = Field(16, ge=0, description="fixed examples per split for theorem/layers rows (MLP)")
    bfd_batch: int = Field(32, ge=0, description="fixed batch per split for functional dimension; 0 = off")
    bfd_output: Literal["logits", "softmax"] = Field(
        "logits",
        description=(
            "outputs whose parameter Jacobian the BFD ranks (softmax: the official Functional-dimension code's default)"
        ),
    )
    bfd_random_batches: tuple[int, ...] = Field(
        (),
        description=(
            "growing sizes of nested random-input batches for the computable "
            "full functional dimension (fdim table); () = off"
        ),
    )
    sharpness_iters: int = Field(20, ge=0, description="power iterations for sharpness; 0 = off")
    probe_points: int = Field(0, ge=0, description="points on the diagonal t*(1,...,1), t in [-1,1]; 0 = off")
    divergence_factor: float = Field(
        1e3, gt=1.0, description="a train loss above this × max(initial loss, 1), or NaN/inf, ends the run as diverged"
    )
    dtype: Literal["float32", "float64"] = "float32"
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$")
    scale: Literal[SCALES] = Field(  # pyright: ignore[reportInvalidTypeForm]
        "cpu", description="sweep scale: demo (`make demo`), cpu (the sweep file) or paper (its [paper] section)"
    )

    @model_validator(mode="before")
    @classmethod
    def _momentum_default(cls, data):
        # Resolve the default here so the hashed config states it explicitly.
        if isinstance(data, dict) and "momentum" not in data:
            data = {**data, "momentum": 0.0 if data.get("optimizer", "sgd") == "sgd" else 0.9}
        if isinstance(data, dict) and data.get("zero_bias") is None:
            data = {**data, "zero_bias": zero_bias_default(data.get("init", "default"))}
        return data

    @model_validator(mode="after")
    def _coherent(self):
        if self.loss == "mse" and self.label_noise > 0 and self.dataset == "parabola":
            raise ValueError("label_noise applies to class labels; the parabola is a regression: set label_noise = 0")
        if self.step_label_noise > 0 and self.loss != "cross_entropy":
            raise ValueError("step_label_noise redraws class labels: use loss = 'cross_entropy' or set it to 0")
        if self.stop_at_train_error is not None and self.loss != "cross_entropy":
            raise ValueError(
                "stop_at_train_error needs class labels (loss = 'cross_entropy'); "
                "for a regression use stop_at_train_loss"
            )
        if self.optimizer == "sgd" and self.momentum > 0:
            raise ValueError("optimizer = 'sgd' has no momentum: use optimizer = 'momentum' or set momentum = 0")
        return self

    @property
    def run_id(self) -> str:
        unset = {k for k, default in HASHED_IF_SET.items() if getattr(self, k) == default}
        return run_id_of(self.model_dump(exclude=set(NOT_HASHED) | unset))

    def runs_row(self) -> dict:
        """The `runs` columns this config determines (the rest come from the finished run)."""
        return {
            "run_id": self.run_id,
            **{f: getattr(self, f) for f in CONFIG_COLUMNS},
            "config_json": self.model_dump_json(),
        }


# The runs columns a config fills, for the runner's RunConfig and a user's dict alike; `device` is
# left to the run, which stores the device it resolved ("auto" → "cpu").
CONFIG_COLUMNS = tuple(f for f in RunConfig.model_fields if f in RUNS.names and f != "device")

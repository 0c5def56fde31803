"""Checks that run before a collect writes anything: every failure is one ConfigError line.

- the store path is a folder (or absent);
- file-backed datasets are present and readable;
- each requested device exists here (`device = "cuda"` on a CPU machine stops up front);
- model and data sizes are bounded (MAX_PARAMS, MAX_DATA_BYTES) unless huge runs are allowed:
  parameters are counted on PyTorch's meta device, so an absurd width allocates nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from gclab.collect.sweep import ConfigError

MAX_PARAMS = 100_000_000  # 400 MB of float32 weights, before gradients and optimizer state
MAX_DATA_BYTES = 8 * 2**30  # float32 features of train + test


def _where(sweep) -> str:
    return Path(sweep.source).name


def _dataset_shape(cfg, data_dir, cache: dict) -> tuple[tuple, int]:
    """(input_shape, n_classes) from a one-example load (files checked, nothing generated at size)."""
    from gclab.collect.datasets import DatasetNotFoundError
    from gclab.collect.train import load_run_dataset

    key = (cfg.dataset, cfg.raw_dir, cfg.model == "mlp", cfg.input_dim, cfg.n_classes, cfg.data_seed)
    if key not in cache:
        try:
            ds = load_run_dataset(cfg, data_dir, n_train=1, n_test=1)
        except (DatasetNotFoundError, ValueError) as exc:
            cache[key] = exc
        else:
            cache[key] = (ds.input_shape, ds.n_classes)
    if isinstance(cache[key], Exception):
        raise cache[key]
    return cache[key]


def _n_params(cfg, input_shape, n_out, cache: dict) -> int:
    from gclab.collect.models import build_model

    key = (cfg.model, input_shape, n_out, cfg.width, cfg.depth, cfg.activation, cfg.bias)
    if key not in cache:
        with torch.device("meta"):
            model = build_model(
                cfg.model,
                input_shape=input_shape,
                n_out=n_out,
                width=cfg.width,
                depth=None if cfg.model == "resnet18" else cfg.depth,
                activation=cfg.activation,
                bias=cfg.bias,
            )
        cache[key] = sum(p.numel() for p in model.parameters())
    return cache[key]


def check_device(requested: str) -> None:
    from gclab.collect.device import resolve_device

    try:
        device = resolve_device(requested)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(
            f"device = {requested!r} but this machine has {torch.cuda.device_count()} CUDA "
            f"device(s); use device = 'cuda:0' or 'auto'"
        )


def preflight(sweeps, data_dir, *, allow_huge: bool = False) -> None:
    """Raise ConfigError (one line, naming the sweep file) for the first problem; write nothing."""
    if Path(data_dir).exists() and not Path(data_dir).is_dir():
        raise ConfigError(f"--data {data_dir} is a file; point --data at the store folder (default ./data)")
    seen = _Seen()
    for sweep in sweeps:
        for cfg in sweep.runs:
            try:
                _check_run(cfg, data_dir, allow_huge=allow_huge, seen=seen)
            except ConfigError as exc:
                raise ConfigError(f"{_where(sweep)}: {exc}") from None


@dataclass
class _Seen:
    """What earlier runs of the same collect already checked (each device, dataset and model once)."""

    devices: set = field(default_factory=set)
    datasets: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)


def _check_run(cfg, data_dir, *, allow_huge: bool, seen: _Seen) -> None:
    """One run's device, dataset and sizes; ConfigError without the sweep's name."""
    if cfg.device not in seen.devices:
        seen.devices.add(cfg.device)
        check_device(cfg.device)
    if cfg.input_dim and cfg.input_dim > 10**7 and not allow_huge:
        raise ConfigError(
            f"input_dim = {cfg.input_dim:,} is absurdly large; pass --allow-huge (make collect HUGE=1) if you mean it"
        )
    try:
        shape, k = _dataset_shape(cfg, data_dir, seen.datasets)
    except ValueError as exc:  # DatasetNotFoundError is a FileNotFoundError: caught below
        raise ConfigError(" ".join(str(exc).split())) from None
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from None
    if not allow_huge:
        _check_size(cfg, shape, k, seen.params)


def _check_size(cfg, shape: tuple, k: int, params: dict) -> None:
    """The model's parameter count (on the meta device) and the data's float32 bytes, against their bounds."""
    try:
        n = _n_params(cfg, shape, k, params)
    except ValueError:
        n = 0  # a model that cannot be built here fails as a recorded `failed` run
    if n > MAX_PARAMS:
        raise ConfigError(
            f"{cfg.model} with width = {cfg.width}, depth = {cfg.depth} has "
            f"{n:,} parameters, more than {MAX_PARAMS:,}; use a smaller width/depth, or pass "
            "--allow-huge (make collect HUGE=1) if you mean it"
        )
    data_bytes = ((cfg.n_train or 0) + (cfg.n_test or 0)) * math.prod(shape) * 4
    if data_bytes > MAX_DATA_BYTES:
        raise ConfigError(
            f"n_train + n_test = {(cfg.n_train or 0) + (cfg.n_test or 0):,} "
            f"examples need {data_bytes / 2**30:.0f} GiB; use fewer, or pass --allow-huge "
            "(make collect HUGE=1) if you mean it"
        )

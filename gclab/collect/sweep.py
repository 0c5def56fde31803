"""Sweep files: TOML with a base table, grid axes and seeds, expanded into validated run configs.

    description = "what the sweep tests"
    seeds = [0, 1, 2]
    [base]            # fields of RunConfig shared by every run
    dataset = "mnist1d"
    [grid]            # axes: every combination (or [[grids]]: a union of such products)
    lr = [0.01, 0.1]
    [paper]           # overrides used with --scale paper (same keys: seeds, base, grid/grids)
    [demo]            # overrides used with --scale demo: fewer widths, seeds and steps (`make demo`)

Every problem is raised as a one-line ConfigError naming the file, the key and the fix,
before anything is written: wrong shapes (`base = 5`), non-UTF-8 text, `seeds = []`, and a
grid of more than MAX_RUNS runs unless the caller allows huge sweeps (`--allow-huge`); the
size is computed before the grid is expanded.
"""

from __future__ import annotations

import difflib
import itertools
import math
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictInt, ValidationError

from gclab.collect.config import RunConfig
from gclab.store.schema import SCALES  # `cpu` is the sweep file itself, the others its sections
from gclab.store.sweeps import DEMO, DEMO_SWEEPS, SHIPPED_SWEEPS

TOP_KEYS = {"description", "seeds", "base", "grid", "grids", "paper", "demo"}
MAX_RUNS = 10_000  # more is refused without --allow-huge


def expand(names, scale: str) -> tuple[list[str], str]:
    """The sweeps and scale a request means: `demo` is DEMO_SWEEPS at the demo scale."""
    names = [str(n) for n in names]
    return (list(DEMO_SWEEPS), DEMO) if names == [DEMO] else (names, scale)


class _Section(BaseModel):
    """The shape of a sweep file's tables (values are checked by RunConfig)."""

    model_config = ConfigDict(extra="forbid")
    seeds: list[StrictInt] | StrictInt | None = None
    base: dict[str, Any] = {}
    grid: dict[str, Any] | None = None
    grids: list[dict[str, Any]] | None = None


class _SweepFile(_Section):
    description: str = ""
    paper: _Section | None = None
    demo: _Section | None = None


class ConfigError(ValueError):
    """Bad sweep file or override; the message is one line that says what to change."""


@dataclass(frozen=True)
class Sweep:
    name: str
    description: str
    source: str
    runs: tuple[RunConfig, ...]


def shipped_sweeps() -> list[str]:
    """The names `--sweep` takes besides a path: the registry's sweeps (tests/test_experiments.py checks
    they are exactly the files in gclab/collect/sweeps/) and DEMO."""
    return sorted([DEMO, *SHIPPED_SWEEPS])


def _locate(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ConfigError(
                f"sweep file {path} not found; give a shipped sweep name ({', '.join(shipped_sweeps())}) "
                "or a path to a .toml file"
            )
        return path
    shipped = resources.files("gclab.collect.sweeps") / f"{name_or_path}.toml"
    if not shipped.is_file():
        hint = difflib.get_close_matches(name_or_path, shipped_sweeps(), n=1)
        raise ConfigError(
            f"unknown sweep '{name_or_path}'"
            + (f" (did you mean '{hint[0]}'?)" if hint else "")
            + f"; shipped sweeps: {', '.join(shipped_sweeps())}, or pass a path to a .toml file"
        )
    return Path(str(shipped))


def _unknown_key(where: str, key: str) -> ConfigError:
    fields = list(RunConfig.model_fields)
    hint = difflib.get_close_matches(key, fields, n=1)
    return ConfigError(
        f"{where}: unknown key '{key}'"
        + (f" (did you mean '{hint[0]}'?)" if hint else "")
        + f"; valid keys: {', '.join(fields)}"
    )


def _explain(where: str, err: ValidationError) -> ConfigError:
    e = err.errors()[0]
    key = ".".join(str(p) for p in e["loc"]) or "config"
    if e["type"] == "extra_forbidden":
        return _unknown_key(where, key)
    msg = e["msg"].removeprefix("Value error, ")
    shown = f"{key} = {e['input']!r}" if e["loc"] else "config"
    return ConfigError(f"{where}: {shown} is invalid: {msg}")


def parse_overrides(items: list[str] | None) -> dict:
    """`["steps=2000", "lr=0.05"]` → {"steps": 2000, "lr": 0.05}; values parse as TOML, else as strings."""
    out = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f'--set {item!r}: expected key=value, e.g. SET="steps=2000 lr=0.05"')
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        out[key.strip()] = value
    return out


def _grids(spec: dict, where: str) -> list[dict]:
    if "grid" in spec and "grids" in spec:
        raise ConfigError(f"{where}: use either [grid] or [[grids]], not both")
    grids = spec.get("grids", [spec["grid"]] if "grid" in spec else [{}])
    for grid in grids:
        for axis, values in grid.items():
            if axis not in RunConfig.model_fields:
                raise _unknown_key(f"{where} [grid]", axis)
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{where}: grid axis '{axis}' must be a non-empty list, e.g. {axis} = [{values!r}]")
    return grids


def _read_spec(path: Path, where: str) -> dict:
    """The TOML table of a sweep file, its shape checked; every failure one line."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{where}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); save the file as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot be read ({exc.strerror}); check the path and its permissions") from None
    try:
        spec = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML ({' '.join(str(exc).split())})") from None
    for key in spec:
        if key not in TOP_KEYS:
            raise ConfigError(f"{where}: unknown top-level key '{key}'; allowed: {', '.join(sorted(TOP_KEYS))}")
    try:
        _SweepFile.model_validate(spec)
    except ValidationError as err:
        e = err.errors()[0]
        key = ".".join(str(p) for p in e["loc"][:2])
        raise ConfigError(
            f"{where}: {key} = {e['input']!r} has the wrong shape ({e['msg']}); see the sweep file "
            "layout in gclab/collect/sweep.py: seeds = [0, 1], [base] key = value, [grid] key = [values]"
        ) from None
    return spec


def _n_runs(grids: list[dict], seeds: list) -> int:
    return sum(math.prod(len(v) for v in grid.values()) for grid in grids) * len(seeds)


def load_sweep(
    name_or_path: str, *, scale: str = "cpu", overrides: dict | None = None, allow_huge: bool = False
) -> Sweep:
    path = _locate(name_or_path)
    where = path.name
    spec = _read_spec(path, where)
    spec = _at_scale(spec, scale, where)
    overrides = dict(overrides or {})
    seeds = overrides.pop("seeds", spec.get("seeds", [0]))
    seeds = seeds if isinstance(seeds, list) else [seeds]
    if not seeds:
        raise ConfigError(f"{where}: seeds = [] runs nothing; give at least one seed, e.g. seeds = [0]")
    base = spec.get("base", {})
    for key in (*base, *overrides):
        if key not in RunConfig.model_fields:
            raise _unknown_key(f"{where} [base]" if key in base else "--set", key)
    name = base.get("sweep", path.stem)
    grids = _grids(spec, where)
    if (n := _n_runs(grids, seeds)) > MAX_RUNS and not allow_huge:
        raise ConfigError(
            f"{where}: {n:,} runs (grid x seeds) is more than {MAX_RUNS:,}; shrink the grid, "
            "or pass --allow-huge (make collect HUGE=1) if you mean it"
        )
    runs = _expand(grids, seeds, {**base, "sweep": name, "scale": scale}, overrides, where)
    return Sweep(name=name, description=spec.get("description", ""), source=str(path), runs=runs)


def _at_scale(spec: dict, scale: str, where: str) -> dict:
    """The sweep file's spec with its [<scale>] section merged in ([base] keys merged, its grid(s) replacing)."""
    if scale not in SCALES:
        raise ConfigError(f"scale = {scale!r} is invalid: use one of {', '.join(SCALES)}")
    if scale == "cpu":
        return spec
    if scale == "demo" and "demo" not in spec:
        raise ConfigError(
            f"{where}: no [demo] section, so it has no demo scale; add one (see fig5.toml) "
            "or collect it with --scale cpu"
        )
    section = spec.get(scale, {})
    spec = {
        **spec,
        **{k: v for k, v in section.items() if k != "base"},
        "base": {**spec.get("base", {}), **section.get("base", {})},
    }
    if "grids" in section:
        spec.pop("grid", None)
    elif "grid" in section:
        spec.pop("grids", None)
    return spec


def _expand(grids: list[dict], seeds: list, base: dict, overrides: dict, where: str) -> tuple[RunConfig, ...]:
    """One RunConfig per grid point × seed (grid order, seeds innermost), duplicates by run_id dropped."""
    runs: dict[str, RunConfig] = {}
    for grid in grids:
        axes = list(grid)
        for combo in itertools.product(*(grid[a] for a in axes)):
            for seed in seeds:
                fields = {**base, "seed": seed, **dict(zip(axes, combo)), **overrides}
                try:
                    cfg = RunConfig(**fields)
                except ValidationError as err:
                    raise _explain(where if not overrides else f"{where} with --set", err) from None
                runs.setdefault(cfg.run_id, cfg)
    return tuple(runs.values())

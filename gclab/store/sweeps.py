"""The experiment catalog's sweep names and kinds, derived from the experiments registry
(`gclab.experiments`, docs/EXPERIMENTS.md).

`runs.sweep` holds these names, so they are part of the store's contract: `collect` runs them,
`analysis` and the report select by them, `planted` fakes them. Imports only `gclab.experiments`.
"""

from __future__ import annotations

from gclab.experiments import demo_sweeps, experiment, paper_scale_only, sweeps

# The sweeps `gclab collect --paper` runs, in order; each has a shipped `gclab/collect/sweeps/<name>.toml`.
# Every shipped sweep (the Recorder reserves these names; check rows read their runs), and the ones
# `gclab collect --paper` runs at the CPU scale: all but the [paper]-scale-only sweeps.
SHIPPED_SWEEPS = sweeps()
PAPER_SCALE_ONLY = paper_scale_only()
PAPER_SWEEPS = tuple(s for s in SHIPPED_SWEEPS if s not in PAPER_SCALE_ONLY)

# `make demo` / `--sweep demo`: the name DEMO means these sweeps at their `[demo]` scale (store.schema.SCALES).
DEMO = "demo"
DEMO_SWEEPS = demo_sweeps()

# Fig. 4's learning-rate sweep per optimizer (sweep → the optimizer's name in the report).
FIG4_SWEEPS = dict(zip(experiment("fig4").sweeps, experiment("fig4").labels, strict=True))

# Sweeps whose claims are about interpolating models: every run trains to zero training error, and
# only runs that reached it enter a claim (docs/EXPERIMENTS.md, "Training to interpolation").
INTERPOLATING_SWEEPS = sweeps(where=lambda e: e.interpolating)

# Sweeps whose claims are a monotone trend of GC or accuracy in one swept hyperparameter.
TREND_SWEEPS = sweeps(where=lambda e: e.trend)


def sql_in(sweeps, column: str = "r.sweep") -> str:
    """`column IN ('a', 'b')`: the one SQL predicate that selects runs by sweep name (quotes doubled)."""
    if isinstance(sweeps, str) or not sweeps:
        raise ValueError(f"sql_in takes a non-empty list of sweep names, got {sweeps!r}; e.g. sql_in(['fig4'])")
    return f"{column} IN (" + ", ".join("'" + s.replace("'", "''") + "'" for s in sweeps) + ")"

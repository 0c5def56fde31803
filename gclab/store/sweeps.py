"""The experiment catalog's sweep names and kinds, defined once (docs/EXPERIMENTS.md).

`runs.sweep` holds these names, so they are part of the store's contract: `collect` runs them,
`analysis` and the report select by them, `planted` fakes them. Imports nothing.
"""

from __future__ import annotations

# The sweeps `gclab collect --paper` runs, in order; each has a shipped `gclab/collect/sweeps/<name>.toml`.
PAPER_SWEEPS = ("fig1", "fig2", "fig3", "fig4", "fig4_adam", "fig5", "gcreg", "thm51", "igr", "bfd")

# `make demo` / `--sweep demo`: the name DEMO means these sweeps at their `[demo]` scale (store.schema.SCALES).
DEMO = "demo"
DEMO_SWEEPS = ("fig5", "thm51", "fig2", "fig4")

# Fig. 4's learning-rate sweep per optimizer (sweep → the optimizer's name in the report).
FIG4_SWEEPS = {"fig4": "SGD", "fig4_momentum": "SGD+momentum", "fig4_adam": "Adam"}

# Sweeps whose claims are about interpolating models: every run trains to zero training error, and
# only runs that reached it enter a claim (docs/EXPERIMENTS.md, "Training to interpolation").
INTERPOLATING_SWEEPS = ("fig3", *FIG4_SWEEPS, "gcreg", "igr")

# Sweeps whose claims are a monotone trend of GC or accuracy in one swept hyperparameter.
TREND_SWEEPS = ("fig2", "fig3", *FIG4_SWEEPS, "gcreg")


def sql_in(sweeps, column: str = "r.sweep") -> str:
    """`column IN ('a', 'b')`: the one SQL predicate that selects runs by sweep name (quotes doubled)."""
    if isinstance(sweeps, str) or not sweeps:
        raise ValueError(f"sql_in takes a non-empty list of sweep names, got {sweeps!r}; e.g. sql_in(['fig4'])")
    return f"{column} IN (" + ", ".join("'" + s.replace("'", "''") + "'" for s in sweeps) + ")"

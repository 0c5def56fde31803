"""gclab: geometric complexity of neural networks — one import name for the toolkit.

    import gclab
    gclab.geometric_complexity(model, x)                  # the metric engine (collect.metrics)
    with gclab.Recorder(data="data", sweep="mine", config={...}) as rec: ...   # record any loop
    gclab.collect_sweep("fig5", scale="demo")             # train a shipped or own sweep
    gclab.claims()                                        # the claims table with verdicts (polars)
    gclab.render_report()                                 # reports/index.html
    gclab.query("SELECT sweep, count(*) FROM runs GROUP BY ALL")   # read-only SQL → polars

Names resolve on first use, so `import gclab` stays light and the read side never loads torch.
The command line is `gclab --help` (gclab/__main__.py).
"""

from __future__ import annotations

from importlib import import_module

# name → module that defines it (the metric engine's public names come from its __all__).
_METRICS = (
    "geometric_complexity",
    "geometric_complexity_estimate",
    "step_metrics",
    "step_terms",
    "theorem_terms",
    "per_example_grad_norms",
    "functional_dimension",
    "ntk_gram",
    "param_norm_sq",
    "spectral_product",
    "dist_from_init",
    "sharpness",
    "batch_loss",
    "register_rule",
)
_HOMES = {
    **{name: "gclab.collect.metrics" for name in _METRICS},
    "Recorder": "gclab.collect.recorder",
    "Diverged": "gclab.collect.recorder",
    "RunConfig": "gclab.collect.config",
    "collect_sweep": "gclab.collect.runner",
    "load_sweep": "gclab.collect.sweep",
}

__all__ = [*_HOMES, "claims", "render_report", "query", "metrics", "lightning"]


def __getattr__(name: str):
    if name in _HOMES:
        value = getattr(import_module(_HOMES[name]), name)
    elif name == "metrics":
        value = import_module("gclab.collect.metrics")
    elif name == "lightning":
        value = import_module("gclab.lightning")
    else:
        raise AttributeError(f"module 'gclab' has no attribute {name!r}")
    globals()[name] = value
    return value


def claims(data="data"):
    """The claims table (one row per claim, verdicts, Holm-adjusted p) of the store at `data`, as polars."""
    from gclab.analysis.claims import by_kind, claims_table
    from gclab.store.db import connect

    with connect(data) as con:
        return by_kind(claims_table(con))


def render_report(data="data", out="reports", **options):
    """Render `<out>/index.html` and `<out>/figures/` from the store at `data`; returns the page's path."""
    from gclab.analysis.report import render

    return render(data, out, **options)


def query(sql: str, data="data", *, max_rows: int = 10_000, **limits):
    """One read-only SQL statement over the store's views (runs, steps, evals, …) as a polars frame."""
    from gclab.store.readonly import read_only_query

    return read_only_query(data, sql, max_rows=max_rows, **limits)


def __dir__():
    return sorted(__all__)
